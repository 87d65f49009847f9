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
