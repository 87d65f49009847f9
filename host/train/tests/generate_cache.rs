//! Greedy generation with the KV cache gives the same tokens as recomputing the whole sequence
//! every step; a chat's second turn reusing the cached prefix equals a fresh generation.

mod common;

use brain_train::generate::{FinishReason, GenOptions, Generator};
use brain_train::models::Model;
use brain_train::tiny::TinySpec;
use brain_train::tokenizer::{Message, Tokenizer};
use common::{small_spec, tiny};
use mlx::Dtype;

fn generator(dir: &std::path::Path) -> Generator {
    Generator::new(Model::load(dir, Some(Dtype::Float32)).unwrap(), Tokenizer::load(dir).unwrap())
}

fn opts(max_tokens: usize) -> GenOptions {
    GenOptions { max_tokens, stop_on_loop: false, ..Default::default() }
}

#[test]
fn cache_equals_no_cache() {
    for spec in [
        TinySpec { init_std: 0.2, seed: 21, ..small_spec() },
        TinySpec { init_std: 0.2, seed: 5, kv_heads: 4, tie_word_embeddings: false, ..small_spec() },
    ] {
        let (_td, dir) = tiny(spec);
        let mut g = generator(&dir);
        let prompt = g.chat_prompt(&[Message::new("user", "Tell me about the tokenizer and the model.")]).unwrap();
        let cached = g.generate_tokens(&prompt, &opts(40), &mut |_| {}).unwrap();
        g.use_cache = false;
        let plain = g.generate_tokens(&prompt, &opts(40), &mut |_| {}).unwrap();
        assert_eq!(cached.tokens, plain.tokens);
        assert_eq!(cached.text, plain.text);
        assert!(cached.generation_tokens > 0);
        if cached.finish_reason != FinishReason::Stop {
            assert_eq!(cached.generation_tokens, 40);
        }
    }
}

#[test]
fn cache_grows_past_its_step_and_prefix_reuse_is_exact() {
    let (_td, dir) = tiny(TinySpec { init_std: 0.2, seed: 9, ..small_spec() });
    let mut g = generator(&dir);
    // Longer than one cache step (256 positions) in total.
    let long = "the model reads the data and writes the adapter ".repeat(30);
    let mut history = vec![Message::new("system", "Be brief."), Message::new("user", &long)];
    let first = g.reply(&history, &opts(12)).unwrap();
    history.push(Message::new("assistant", &first.text));
    history.push(Message::new("user", "And then?"));
    // Second turn through the cached prefix …
    let reused = g.reply(&history, &opts(12)).unwrap();
    assert!(reused.prompt_tokens > 256);
    // … equals a fresh generator without any cache.
    let mut fresh = generator(&dir);
    fresh.use_cache = false;
    let plain = fresh.reply(&history, &opts(12)).unwrap();
    assert_eq!(reused.tokens, plain.tokens);
}

#[test]
fn streaming_pieces_add_up_to_the_text() {
    let (_td, dir) = tiny(TinySpec { init_std: 0.2, seed: 4, ..small_spec() });
    let mut g = generator(&dir);
    let mut streamed = String::new();
    let out = g.reply_stream(&[Message::new("user", "hello")], &opts(20), &mut |s| streamed.push_str(s)).unwrap();
    assert_eq!(streamed, out.text);
}

#[test]
fn a_model_stored_in_bf16_decodes_with_bf16_products_where_the_cpu_has_them() {
    let (_td, dir) = tiny(TinySpec { init_std: 0.2, seed: 13, dtype: "bfloat16".into(), ..small_spec() });
    let available = mlx::bf16mm::is_available().unwrap();
    // The default dtype: bf16 products (2 layers x 7 matrices and the tied output matrix), read
    // in place one row at a time when decoding; an explicit f32 keeps f32 products.
    let mut auto = Generator::load(&dir, &[], None).unwrap();
    let exact = Generator::load(&dir, &[], Some(Dtype::Float32)).unwrap();
    assert_eq!(auto.model.bf16_matrices(), if available { 15 } else { 0 });
    assert_eq!(exact.model.bf16_matrices(), 0);
    // A 4-bit copy (its scales in bf16) decodes through its integer row kernels either way, so
    // only its prompt's tiles would be in bf16: by default only where they outrun sgemm.
    let q4 = _td.path().join("q4");
    brain_train::convert::quantize_model(&dir, &q4, 32, 4).unwrap();
    let mut quantized = Generator::load(&q4, &[], None).unwrap();
    assert!(quantized.model.is_quantized());
    assert_eq!(quantized.model.bf16_matrices() > 0, mlx::bf16mm::tiles_outrun_f32().unwrap());
    if available {
        assert!(quantized.model.use_bf16_matmul(Some(true), brain_train::models::Work::Decoding).unwrap() > 0);
    }
    let prompt = auto.chat_prompt(&[Message::new("user", "Tell me about the tokenizer and the model.")]).unwrap();
    let ids = mlx::Array::from_slice(&prompt.iter().map(|&t| t as i32).collect::<Vec<_>>(), &[1, prompt.len() as i32]).unwrap();
    let (a, e) = (auto.model.logits(&ids).unwrap().to_vec::<f32>().unwrap(), exact.model.logits(&ids).unwrap().to_vec::<f32>().unwrap());
    let scale = e.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(&e).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale;
    assert!(diff < 2e-2 && (diff > 0.0) == available, "logits with bf16 products vs f32: max diff {diff} of {scale}");
    // Decoding one row at a time (the in-place kernel) agrees with recomputing the sequence
    // (the packed one).
    let cached = auto.generate_tokens(&prompt, &opts(24), &mut |_| {}).unwrap();
    assert_eq!(cached.bf16_matrices, auto.model.bf16_matrices());
    auto.use_cache = false;
    let plain = auto.generate_tokens(&prompt, &opts(24), &mut |_| {}).unwrap();
    assert_eq!(cached.tokens, plain.tokens);
    assert!(cached.generation_tokens > 0);
}
