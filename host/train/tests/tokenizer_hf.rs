//! Our ChatML tokenization equals Hugging Face's `apply_chat_template` on the model's own
//! tokenizer files (when python3 with transformers is available).

mod common;

use std::process::Command;

use brain_train::tokenizer::{Message, Tokenizer};
use common::{small_spec, tiny};

#[test]
fn chat_tokens_match_hugging_face() {
    let ok = Command::new("python3").args(["-c", "import transformers"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("note: python3 with transformers is not available; skipping");
        return;
    }
    let (_td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let convs = vec![
        vec![Message::new("user", "Hello"), Message::new("assistant", "Hi! How can I help?")],
        vec![
            Message::new("system", "Be brief."),
            Message::new("user", "fn main() {\n    println!(\"x\");\n}\n\nExplain."),
            Message::new("assistant", "\nIt prints x.\n\n"),
            Message::new("user", "Ünïcödé — ok?"),
            Message::new("assistant", "Yes: 日本語 too."),
        ],
    ];
    let json = serde_json::to_string(&convs).unwrap();
    let py = "import sys, json\nfrom transformers import AutoTokenizer\nt = AutoTokenizer.from_pretrained(sys.argv[1])\nprint(json.dumps([t.apply_chat_template(c, tokenize=True, return_dict=False) for c in json.loads(sys.argv[2])]))";
    let out = Command::new("python3").args(["-c", py, &dir.display().to_string(), &json]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = out.stdout.split(|b| *b == b'\n').find(|l| l.starts_with(b"[")).unwrap().to_vec();
    let theirs: Vec<Vec<u32>> = serde_json::from_slice(&line).unwrap();
    for (c, t) in convs.iter().zip(theirs) {
        assert_eq!(tok.encode_chat(c).unwrap().tokens, t);
    }
}
