//! `brain fuse`: the fused model's logits equal base + adapter logits (1e-4), dense and 4-bit
//! bases (the latter refused without --dequantize), HF layout with tokenizer files.

mod common;
mod ship_support;

use std::path::Path;

use common::Env;
use ship_support::{logits, max_abs_diff, random_adapter, tiny_base};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn fused_logits_equal_base_plus_adapter() {
    let env = Env::new();
    env.write_config("");
    for tie in [true, false] {
        let base = env.path().join(format!("base-{tie}"));
        let adapter = env.path().join(format!("adapter-{tie}"));
        let out = env.path().join(format!("fused-{tie}"));
        tiny_base(&base, tie);
        random_adapter(&base, &adapter, 4, 2.5, 11);

        let expected = logits(&base, Some(&adapter));
        let plain = logits(&base, None);
        assert!(max_abs_diff(&expected, &plain) > 1e-2, "the adapter must change the logits for the test to mean anything");

        let r = env.run(["fuse", "--adapter", adapter.to_str().unwrap(), "--model", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"]);
        r.assert_ok();
        let report = r.json();
        assert_eq!(report["fused"], 2 * ship_support::KEYS.len(), "{report}");
        assert_eq!(report["dequantized"], 0);

        let fused = logits(&out, None);
        let diff = max_abs_diff(&fused, &expected);
        assert!(diff < 1e-4, "fused vs base + adapter: max |diff| {diff}");

        // HF layout: config.json, model.safetensors, tokenizer files.
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        assert_eq!(json(&out.join("config.json")), json(&base.join("config.json")));
        assert_eq!(std::fs::read(out.join("tokenizer.json")).unwrap(), std::fs::read(base.join("tokenizer.json")).unwrap());
    }

    // The output directory is never the base, and a model there is not replaced by accident.
    let base = env.path().join("base-true");
    let adapter = env.path().join("adapter-true");
    let r = env.run(["fuse", "--adapter", adapter.to_str().unwrap(), "--model", base.to_str().unwrap(), "--out", base.to_str().unwrap()]);
    r.assert_failed();
    assert!(r.stderr.contains("new directory"), "{}", r.stderr);
    let out = env.path().join("fused-true");
    let r = env.run(["fuse", "--adapter", adapter.to_str().unwrap(), "--model", base.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    r.assert_failed();
    assert!(r.stderr.contains("already holds a model"), "{}", r.stderr);
    let r = env.run(["fuse", "--adapter", adapter.to_str().unwrap(), "--model", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--overwrite"]);
    r.assert_ok();
    assert!(r.stdout.contains("fused") && r.stdout.contains("10 layers"), "{}", r.stdout);

    // --dtype: the fused weights are stored in the dtype asked for; an unknown one is refused.
    let bf = env.path().join("fused-bf16");
    let r = env.run(["fuse", "--adapter", adapter.to_str().unwrap(), "--model", base.to_str().unwrap(), "--out", bf.to_str().unwrap(), "--dtype", "bfloat16", "--json"]);
    r.assert_ok();
    assert_eq!(r.json()["dtype"], "bfloat16");
    let header = safetensors_header(&bf.join("model.safetensors"));
    let fused: Vec<_> = header.as_object().unwrap().iter().filter(|(k, _)| k.ends_with("q_proj.weight")).collect();
    assert!(!fused.is_empty());
    for (k, v) in fused {
        assert_eq!(v["dtype"], "BF16", "{k}");
    }
    let r = env.run(["fuse", "--adapter", adapter.to_str().unwrap(), "--model", base.to_str().unwrap(), "--out", env.path().join("f8").to_str().unwrap(), "--dtype", "float8"]);
    r.assert_failed();
    assert!(r.stderr.contains("float8") && r.stderr.contains("float16"), "{}", r.stderr);
}

/// The JSON header of a .safetensors file.
fn safetensors_header(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

#[test]
fn a_quantized_base_is_refused_or_dequantized() {
    let env = Env::new();
    let base = env.path().join("base");
    let qbase = env.path().join("base-4bit");
    let adapter = env.path().join("adapter");
    tiny_base(&base, true);
    brain_train::convert::quantize_model(&base, &qbase, 32, 4).expect("quantize");
    assert!(json(&qbase.join("config.json")).get("quantization").is_some());
    random_adapter(&base, &adapter, 4, 2.0, 3);
    // Defaults from the config: [train] base_model and adapter_path.
    env.write_config(&format!(
        "[train]\nbase_model = {}\nadapter_path = {}\n",
        common::toml_str(&qbase),
        common::toml_str(&adapter)
    ));

    let out = env.path().join("fused");
    let r = env.run(["fuse", "--out", out.to_str().unwrap()]);
    r.assert_failed();
    assert!(r.stderr.contains("quantized") && r.stderr.contains("--dequantize"), "{}", r.stderr);
    assert!(!out.join("model.safetensors").exists());

    let r = env.run(["fuse", "--out", out.to_str().unwrap(), "--dequantize", "--json"]);
    r.assert_ok();
    let report = r.json();
    assert!(report["dequantized"].as_u64().unwrap() >= 2 * 7 + 1, "every linear layer and the embedding: {report}");
    let cfg = json(&out.join("config.json"));
    assert!(cfg.get("quantization").is_none() && cfg.get("quantization_config").is_none(), "{cfg}");
    let st = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    assert!(st.names().iter().all(|n| !n.ends_with(".scales") && !n.ends_with(".biases")));
    assert_eq!(st.tensor("model.layers.0.self_attn.q_proj.weight").unwrap().shape(), &[64, 64]);

    let expected = logits(&qbase, Some(&adapter));
    let fused = logits(&out, None);
    let diff = max_abs_diff(&fused, &expected);
    assert!(diff < 1e-4, "dequantized fused vs 4-bit base + adapter: max |diff| {diff}");
}
