//! Tiny GGUF models through `source::gguf`: config, weights (names, quantization, llama's q/k
//! order), logits equal to the same weights from safetensors, and the tokenizer.

use brain_train::models::Model;
use brain_train::source::gguf;
use mlx::{Array, Dtype};

use super::tiny::{build, tokens_and_merges, Built, Spec};
use crate::common::rel_err;

const SAMPLE: &str =
    "Hello world! It's 2024, and the café costs 3.50€.\n\n  def f(x):\n\treturn x**2  \n<|im_start|>user\nHi there<|im_end|>\n";

fn check_config(b: &Built, s: &Spec) -> brain_train::config::ModelConfig {
    let c = gguf::config(&b.gguf).unwrap();
    assert_eq!(c.model_type, s.arch);
    assert_eq!(
        (c.hidden_size, c.num_hidden_layers, c.intermediate_size),
        (s.hidden, s.layers, s.inter)
    );
    assert_eq!(
        (c.num_attention_heads, c.kv_heads(), c.head_dim()),
        (s.heads, s.kv_heads, s.head_dim())
    );
    assert_eq!(c.head_dim, s.head_dim);
    assert_eq!(c.vocab_size, b.vocab);
    assert_eq!((c.rms_norm_eps, c.rope_theta), (s.eps, s.theta));
    assert_eq!(c.tie_word_embeddings, s.tied);
    assert_eq!(c.max_position_embeddings, 256);
    assert_eq!(c.attention_bias, Some(s.qkv_bias));
    assert_eq!(c.mlp_bias, Some(s.all_bias));
    assert_eq!(c.rope_scaling, None);
    let q = c.quantization.clone().expect("quantized layers");
    // q/k/gate/up (and an untied head) are Q4_0: 4 bits is the majority; v/down/embedding are Q8_0.
    assert_eq!((q.group_size, q.bits), (32, 4));
    assert_eq!(q.for_layer("model.layers.1.self_attn.q_proj"), (32, 4));
    assert_eq!(q.for_layer("model.layers.1.self_attn.v_proj"), (32, 8));
    assert_eq!(q.for_layer("model.layers.0.mlp.down_proj"), (32, 8));
    assert_eq!(q.for_layer("model.embed_tokens"), (32, 8));
    assert_eq!(q.overrides.len(), 2 * s.layers + 1, "{:?}", q.overrides.keys());
    c
}

/// Token ids of SAMPLE as a (1, L) array.
fn ids(b: &Built) -> Array {
    let ids: Vec<i32> = b
        .tokenizer
        .encode(SAMPLE, false)
        .unwrap()
        .get_ids()
        .iter()
        .map(|&i| i as i32)
        .collect();
    Array::from_slice(&ids, &[1, ids.len() as i32]).unwrap()
}

fn logits(m: &Model, ids: &Array) -> Vec<f32> {
    m.logits(ids).unwrap().as_type(Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

fn std_dev(v: &[f32]) -> f32 {
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
}

#[test]
fn gguf_logits_equal_safetensors() {
    for spec in [Spec::llama(), Spec::qwen2(), Spec::qwen3()] {
        let b = build(&spec);
        let config = check_config(&b, &spec);
        let mut w = gguf::weights(&b.gguf, &config).unwrap();
        let embed = &w["model.embed_tokens.weight"];
        assert_eq!(
            (embed.dtype(), embed.shape()),
            (Dtype::Uint32, vec![b.vocab as i32, 64 / 4]),
            "Q8_0 stays 8-bit packed"
        );
        assert_eq!(
            w["model.layers.0.self_attn.q_proj.scales"].shape(),
            vec![(spec.heads * spec.head_dim()) as i32, 64 / 32]
        );
        assert_eq!(
            w["model.layers.0.self_attn.o_proj.weight"].dtype(),
            if spec.arch == "qwen2" { Dtype::Bfloat16 } else { Dtype::Float16 }
        );
        let ids = ids(&b);
        // The Hugging Face side has no rotary factors: compare without them, and check that the
        // model takes them (under the key the loader gives them) rather than ignoring them.
        let rope_freqs = w.remove(gguf::ROPE_FREQS);
        assert_eq!(rope_freqs.is_some(), spec.rope_freqs);
        if let Some(f) = &rope_freqs {
            assert_eq!(f.to_vec::<f32>().unwrap(), b.weights["rope_freqs"].1);
        }
        let from_gguf = Model::from_weights(&b.gguf, config.clone(), w.clone(), Dtype::Float32).unwrap();
        let from_hf = Model::load(&b.hf_dir, Some(Dtype::Float32)).unwrap();
        assert!(from_gguf.is_quantized() && !from_hf.is_quantized());
        let (lg, lh) = (logits(&from_gguf, &ids), logits(&from_hf, &ids));
        assert!(
            std_dev(&lh) > 0.5,
            "{}: logits are flat ({}); the comparison would prove nothing",
            spec.arch,
            std_dev(&lh)
        );
        let e = rel_err(&lg, &lh);
        assert!(e < 1e-4, "{}: GGUF logits differ from safetensors by {e}", spec.arch);
        if let Some(f) = rope_freqs {
            let mut with = w.clone();
            with.insert(gguf::ROPE_FREQS.to_string(), f);
            let m = Model::from_weights(&b.gguf, config.clone(), with, Dtype::Float32).unwrap();
            assert!(rel_err(&logits(&m, &ids), &lh) > 1e-3, "{}: rope_freqs changed nothing", spec.arch);
        }

        if spec.arch == "llama" {
            // The same q/k left in llama.cpp's order must change the logits: the test sees the permutation.
            for l in 0..spec.layers {
                for (k, heads) in [("q_proj", spec.heads), ("k_proj", spec.kv_heads)] {
                    for part in ["weight", "scales", "biases", "bias"] {
                        let name = format!("model.layers.{l}.self_attn.{k}.{part}");
                        let a = &w[&name];
                        let sh = a.shape();
                        let mut split = vec![heads as i32, 2, sh[0] / heads as i32 / 2];
                        split.extend_from_slice(&sh[1..]);
                        let re = a.reshape(&split).unwrap().swapaxes(1, 2).unwrap().reshape(&sh).unwrap();
                        w.insert(name, re);
                    }
                }
            }
            let wrong = Model::from_weights(&b.gguf, config, w, Dtype::Float32).unwrap();
            let e = rel_err(&logits(&wrong, &ids), &lh);
            assert!(e > 1e-2, "llama: logits with permuted q/k should differ, rel err {e}");
        }
    }
}

#[test]
fn gguf_weights_hold_the_written_values() {
    // Every loaded value against what was written (the logits test covers the model side).
    let spec = Spec::qwen3();
    let b = build(&spec);
    let config = check_config(&b, &spec);
    let w = gguf::weights(&b.gguf, &config).unwrap();
    for name in [
        "model.layers.1.self_attn.q_norm.weight",
        "model.layers.0.self_attn.k_norm.weight",
        "model.norm.weight",
    ] {
        assert_eq!(w[name].to_vec::<f32>().unwrap(), b.weights[name].1, "{name}");
    }
    // Every dense weight is the stored value; every quantized one dequantizes to it.
    for (name, (shape, want)) in &b.weights {
        if let Some(prefix) = name.strip_suffix(".weight").filter(|p| w.contains_key(&format!("{p}.scales"))) {
            let (g, bits) = config.quantization.as_ref().unwrap().for_layer(prefix);
            let got = mlx::quantized::dequantize(
                &w[name],
                &w[&format!("{prefix}.scales")],
                Some(&w[&format!("{prefix}.biases")]),
                g,
                bits,
            )
            .unwrap();
            let got = got.as_type(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
            assert!(rel_err(&got, want) < 2e-3, "{name}: {}", rel_err(&got, want));
        } else {
            let got = w[name].as_type(Dtype::Float32).unwrap();
            assert_eq!(got.shape(), shape.iter().map(|&d| d as i32).collect::<Vec<_>>(), "{name}");
            assert_eq!(got.to_vec::<f32>().unwrap(), *want, "{name}");
        }
    }
    // Quantized (scales and biases beside the weight): q, k, v, gate, up, down per block, the embedding, the head.
    assert_eq!(w.len(), b.weights.len() + 2 * (6 * spec.layers + 2));
}

#[test]
fn gguf_tokenizer_gives_the_source_tokenizer_ids() {
    let b = build(&Spec::qwen2());
    let tk = gguf::tokenizer(&b.gguf).unwrap();
    let want = b.tokenizer.encode(SAMPLE, false).unwrap().get_ids().to_vec();
    assert!(want.len() > 30);
    assert_eq!(tk.encode(SAMPLE).unwrap(), want);
    assert_eq!(tk.decode(&want, false).unwrap(), SAMPLE);
    assert_eq!(tk.eos_id, b.tokenizer.token_to_id("<|im_end|>").unwrap());
    let file = brain_train::gguf::GgufFile::open(&b.gguf).unwrap();
    let (inner, parts) = gguf::tokenizer_parts(&file).unwrap();
    assert_eq!(parts.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(parts.bos_token.as_deref(), Some("<|endoftext|>"));
    assert_eq!(parts.pad_token.as_deref(), Some("<|endoftext|>"));
    assert!(!parts.add_bos_token);
    let (tmpl, from) = parts.chat_template.expect("chat template");
    assert!(tmpl.contains("<|im_start|>") && from == "GGUF tokenizer.chat_template");
    assert_eq!(inner.get_vocab_size(true), b.vocab);
    let added = inner.get_added_tokens_decoder();
    assert!(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .iter()
        .all(|t| added.values().any(|a| a.content == *t && a.special)));
    // Special tokens are skipped when decoding with skip_special.
    assert_eq!(tk.decode(&tk.encode("<|im_start|>Hi<|im_end|>").unwrap(), true).unwrap(), "Hi");
}

/// A GGUF with `b`'s vocabulary and `pre`, and the tokenizer.json a Hugging Face model of that
/// family has (its pre-tokenizer written out as JSON, as in those files).
fn family_case(
    b: &Built,
    pre: &str,
    pre_json: serde_json::Value,
    ignore_merges: bool,
) -> (tokenizers::Tokenizer, brain_train::tokenizer::Tokenizer) {
    let (mut tokens, mut merges) = tokens_and_merges(&b.tokenizer);
    // Digit merges (the trained vocabulary has none, its split isolates digits): with them GPT-2's
    // split and SmolLM's per-digit split give different tokens.
    for (t, m) in [("20", "2 0"), ("Ġ2", "Ġ 2"), ("345", "3 45"), ("45", "4 5")] {
        if !tokens.iter().any(|x| x == t) {
            tokens.push(t.to_string());
        }
        merges.insert(0, m.to_string());
    }
    let mut w = brain_train::gguf::GgufWriter::new();
    w.set("general.architecture", "llama")
        .set("tokenizer.ggml.model", "gpt2")
        .set("tokenizer.ggml.pre", pre)
        .set("tokenizer.ggml.tokens", brain_train::gguf::Value::strings(tokens.clone()))
        .set("tokenizer.ggml.merges", brain_train::gguf::Value::strings(merges.clone()))
        .set(
            "tokenizer.ggml.token_type",
            brain_train::gguf::Value::i32s(tokens.iter().map(|t| if t.starts_with("<|") { 3 } else { 1 })),
        )
        .set("tokenizer.ggml.eos_token_id", 2u32);
    let path = b.gguf.with_file_name(format!("{pre}.gguf"));
    w.write(&path).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    let added: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.starts_with("<|"))
        .map(|(i, t)| serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": pre_json,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges},
    });
    let source: tokenizers::Tokenizer = json.to_string().parse().unwrap();
    (source, gguf::tokenizer(&path).unwrap())
}

#[test]
fn gguf_pre_tokenizer_families_match_their_tokenizer_json() {
    let b = build(&Spec::qwen2());
    let byte_level =
        |use_regex: bool| serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let llama3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let cases = [
        (
            "smollm",
            serde_json::json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            false,
        ),
        ("gpt2", byte_level(true), false),
        (
            "llama-bpe",
            serde_json::json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated", "invert": false}, byte_level(false)]}),
            true,
        ),
    ];
    let text = format!("{SAMPLE} 12345 I'LL they've  \r\n\n x");
    let mut seen = std::collections::BTreeSet::new();
    for (pre, json, ignore) in cases {
        let (source, ours) = family_case(&b, pre, json, ignore);
        let want = source.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(ours.encode(&text).unwrap(), want, "pre-tokenizer {pre}");
        seen.insert(want);
    }
    assert_eq!(
        seen.len(),
        3,
        "the three families must split this text differently, or the test proves little"
    );
}

#[test]
fn unsupported_files_are_refused_with_what_is_supported() {
    let td = tempfile::tempdir().unwrap();
    let write = |name: &str, f: &dyn Fn(&mut brain_train::gguf::GgufWriter)| {
        let mut w = brain_train::gguf::GgufWriter::new();
        w.set("general.architecture", "llama")
            .set("llama.block_count", 1u32)
            .set("llama.embedding_length", 64u32)
            .set("llama.feed_forward_length", 128u32)
            .set("llama.attention.head_count", 4u32)
            .set("llama.attention.layer_norm_rms_epsilon", 1e-5f32)
            .set("tokenizer.ggml.model", "gpt2")
            .set("tokenizer.ggml.tokens", brain_train::gguf::Value::strings(["a", "b"]))
            .set("tokenizer.ggml.merges", brain_train::gguf::Value::strings(["a b"]));
        f(&mut w);
        let p = td.path().join(name);
        w.write(&p).unwrap();
        p
    };
    let p = write("gemma.gguf", &|w| {
        w.set("general.architecture", "gemma2");
    });
    let e = gguf::config(&p).unwrap_err().to_string();
    assert!(
        e.contains("gemma2") && e.contains("llama, qwen2, qwen3") && e.contains("gemma.gguf"),
        "{e}"
    );
    let p = write("spm.gguf", &|w| {
        w.set("tokenizer.ggml.model", "llama");
    });
    let e = gguf::tokenizer(&p).err().unwrap().to_string();
    assert!(e.contains("SentencePiece") && e.contains("not supported yet"), "{e}");
    let p = write("pre.gguf", &|w| {
        w.set("tokenizer.ggml.pre", "deepseek-llm");
    });
    let e = gguf::tokenizer(&p).err().unwrap().to_string();
    assert!(e.contains("deepseek-llm") && e.contains("smollm") && e.contains("llama-bpe"), "{e}");
    let p = write("yarn.gguf", &|w| {
        w.set("llama.rope.scaling.type", "yarn").set("llama.rope.scaling.factor", 4.0f32);
    });
    assert!(gguf::config(&p).unwrap_err().to_string().contains("\"yarn\" is not supported"));
    let p = write("linear.gguf", &|w| {
        w.set("llama.rope.scaling.type", "linear").set("llama.rope.scaling.factor", 4.0f32);
    });
    assert_eq!(
        gguf::config(&p).unwrap().rope_scaling,
        Some(serde_json::json!({"type": "linear", "factor": 4.0}))
    );
    let p = write("noeps.gguf", &|w| {
        w.set("llama.attention.layer_norm_rms_epsilon", "x");
    });
    assert!(gguf::config(&p).unwrap_err().to_string().contains("layer_norm_rms_epsilon"));
}

#[test]
fn name_tables_are_inverse() {
    for g in [
        "token_embd.weight",
        "output_norm.weight",
        "output.weight",
        "blk.12.attn_q.scales",
        "blk.0.attn_k_norm.weight",
        "blk.3.ffn_down.biases",
        "blk.1.attn_v.bias",
        "rope_freqs.weight",
    ] {
        let hf = gguf::hf_name(g).unwrap();
        assert_eq!(gguf::gguf_name(&hf).as_deref(), Some(g), "{g} → {hf}");
    }
    assert_eq!(
        gguf::hf_name("blk.3.attn_output.weight").as_deref(),
        Some("model.layers.3.self_attn.o_proj.weight")
    );
    assert_eq!(gguf::hf_name("blk.x.attn_q.weight"), None);
    assert_eq!(gguf::hf_name("blk.0.attn_qkv.weight"), None);
}

#[test]
fn source_layer_loads_gguf_files() {
    let spec = Spec::qwen2();
    let b = build(&spec);
    assert_eq!(
        brain_train::source::resolve(&b.gguf).unwrap(),
        brain_train::source::Origin::Gguf(b.gguf.clone())
    );
    assert_eq!(brain_train::source::load_config(&b.gguf).unwrap(), gguf::config(&b.gguf).unwrap());
    let ids = ids(&b);
    let m = Model::load_quantized(&b.gguf, Some(Dtype::Float32)).unwrap();
    assert!(m.is_quantized());
    let from_hf = Model::load(&b.hf_dir, Some(Dtype::Float32)).unwrap();
    let e = rel_err(&logits(&m, &ids), &logits(&from_hf, &ids));
    assert!(e < 1e-4, "{e}");
    // On the CPU, `load` keeps 4- and 8-bit weights packed too (the bridge's kernel).
    let packed = Model::load(&b.gguf, Some(Dtype::Float32)).unwrap();
    assert!(packed.is_quantized());
    assert_eq!(logits(&packed, &ids), logits(&m, &ids));
    let tk = brain_train::source::load_tokenizer(&b.gguf).unwrap();
    assert_eq!(tk.encode(SAMPLE).unwrap(), b.tokenizer.encode(SAMPLE, false).unwrap().get_ids());
    let info = brain_train::source::model_info(&b.gguf).unwrap();
    assert_eq!(
        (info.format, info.architecture.as_str(), info.layers, info.vocab_size),
        ("gguf", "qwen2", 2, b.vocab)
    );
    assert_eq!(info.quantization.as_deref(), Some("4-bit (group 32), 8-bit for 5 tensors"));
    // `ollama:` goes to the Ollama store (this machine's has no such model).
    let e = brain_train::source::resolve(std::path::Path::new("ollama:no-such-model-here:x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-model-here:x") && e.contains("not found"), "{e}");
}

#[test]
fn a_gguf_base_fuses_into_a_hugging_face_directory() {
    let spec = Spec::llama();
    let b = build(&spec);
    let run = b._dir.path().join("run");
    // A small real adapter: a few updates on chat lines through the GGUF's own template.
    let data = b._dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let line = |q: &str, a: &str| serde_json::json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}).to_string() + "\n";
    std::fs::write(data.join("train.jsonl"), line("Hello world", "It's 2024!") + &line("café?", "3.50€ each")).unwrap();
    let args = brain_train::TrainArgs {
        model: b.gguf.clone(),
        data,
        adapter_path: run.clone(),
        iters: 3,
        batch_size: 2,
        learning_rate: 5e-2,
        num_layers: -1,
        steps_per_eval: 1000,
        ..Default::default()
    };
    brain_train::train(&args, &mut |_| {}).unwrap();
    let out = b._dir.path().join("fused");
    let fuse = |dequantize| {
        brain_train::fuse::fuse(&brain_train::fuse::FuseArgs {
            model: b.gguf.clone(),
            adapter_path: run.clone(),
            save_path: out.clone(),
            dequantize,
            dtype: Some("float32".into()),
            overwrite: false,
        })
    };
    assert!(fuse(false).unwrap_err().to_string().contains("--dequantize"), "a quantized base needs --dequantize");
    let report = fuse(true).unwrap();
    assert!(report.copied.contains(&"tokenizer.json".to_string()), "{:?}", report.copied);
    // The fused directory is a plain Hugging Face model: same logits as GGUF + adapter, same
    // tokenizer ids, the GGUF's chat template.
    let ids = ids(&b);
    let mut with_adapter = Model::load(&b.gguf, Some(Dtype::Float32)).unwrap();
    brain_train::adapters::load_adapters(&mut with_adapter, &run).unwrap();
    let fused = Model::load(&out, Some(Dtype::Float32)).unwrap();
    let e = rel_err(&logits(&fused, &ids), &logits(&with_adapter, &ids));
    assert!(e < 1e-4, "{e}");
    let bare = Model::load(&b.gguf, Some(Dtype::Float32)).unwrap();
    assert!(rel_err(&logits(&bare, &ids), &logits(&with_adapter, &ids)) > 1e-3, "the adapter changes the model");
    let (from_gguf, from_dir) = (brain_train::source::load_tokenizer(&b.gguf).unwrap(), brain_train::source::load_tokenizer(&out).unwrap());
    assert_eq!(from_dir.encode(SAMPLE).unwrap(), from_gguf.encode(SAMPLE).unwrap());
    assert_eq!(from_dir.chat_template().source(), from_gguf.chat_template().source());
    assert_eq!(from_dir.stop_ids(), from_gguf.stop_ids());
}
