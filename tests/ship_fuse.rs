//! `brain fuse`: the fused model's logits equal base + adapter logits (1e-4), dense and 4-bit
//! bases (the latter refused without --dequantize), HF layout with tokenizer files; the part of
//! the update lost to bf16 rounding is measured (against the files, in the test) and warned about.

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

/// The f32 values of tensor `name` (F32 or BF16) in a .safetensors file.
fn tensor_f32(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    match t.dtype() {
        safetensors::Dtype::F32 => t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        safetensors::Dtype::BF16 => t.data().chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes(c.try_into().unwrap()) as u32) << 16)).collect(),
        d => panic!("{name}: {d:?}"),
    }
}

/// f32 → bf16 → f32, rounding to nearest even (what MLX's cast does for finite values).
fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

#[test]
fn the_update_lost_to_bf16_rounding_is_measured_and_warned_about() {
    let env = Env::new();
    env.write_config("");
    let base = env.path().join("base");
    tiny_base(&base, true);
    let run = |adapter: &Path, out: &str, dtype: &str| {
        let out = env.path().join(out);
        let r = env.run(["fuse", "--adapter", adapter.to_str().unwrap(), "--model", base.to_str().unwrap(), "--out", out.to_str().unwrap(), "--dtype", dtype, "--json"]);
        r.assert_ok();
        (out, r)
    };
    // An update small next to the weights (as a short LoRA run's is) and a large one.
    for (scale, blurred) in [(0.001f32, true), (2.5, false)] {
        let adapter = env.path().join(format!("adapter-{scale}"));
        random_adapter(&base, &adapter, 4, scale, 5);
        let (exact, r) = run(&adapter, &format!("f32-{scale}"), "float32");
        assert_eq!(r.json()["update_lost"], 0.0, "{}", r.stdout);
        assert_eq!(r.json()["warnings"], serde_json::json!([]));
        let (bf, r) = run(&adapter, &format!("bf16-{scale}"), "bfloat16");
        let report = r.json();
        let lost = report["update_lost"].as_f64().unwrap();

        // The same figure from the files: what the bf16 weights moved by (from the rounded base)
        // against the exact update (f32 fused − base), over every fused layer.
        let (mut update_sq, mut lost_sq) = (0f64, 0f64);
        for layer in 0..2 {
            for key in ship_support::KEYS {
                let name = format!("model.layers.{layer}.{key}.weight");
                let w = tensor_f32(&base.join("model.safetensors"), &name);
                let f = tensor_f32(&exact.join("model.safetensors"), &name);
                let b = tensor_f32(&bf.join("model.safetensors"), &name);
                for i in 0..w.len() {
                    let update = (f[i] - w[i]) as f64;
                    let moved = (b[i] - round_bf16(w[i])) as f64;
                    update_sq += update * update;
                    lost_sq += (moved - update) * (moved - update);
                }
            }
        }
        let expected = (lost_sq / update_sq).sqrt();
        assert!((lost - expected).abs() < 1e-3 * expected.max(1e-2), "reported {lost}, from the files {expected}");
        if blurred {
            assert!(lost > 0.5, "a tiny update is mostly lost in bf16: {lost}");
            let w = report["warnings"].as_array().unwrap();
            assert!(w.len() == 1 && w[0].as_str().unwrap().contains("--dtype float32"), "{report}");
            assert!(r.stderr.contains("bfloat16 loses") && r.stderr.contains("adapter's update"), "{}", r.stderr);
        } else {
            assert!(lost < brain_train::fuse::UPDATE_LOST_WARNING as f64, "a large update survives bf16: {lost}");
            assert_eq!(report["warnings"], serde_json::json!([]));
            assert!(!r.stderr.contains("loses"), "{}", r.stderr);
        }
    }
}
