//! Data loading: formats, bad lines, truncation, batching, deterministic resumable order.

mod common;

use brain_train::data::{collate, load_dir, load_split, Batcher, Format};
use brain_train::tokenizer::Tokenized;
use brain_train::tokenizer::Tokenizer;
use brain_train::Error;
use common::{small_spec, tiny, write_jsonl};
use serde_json::json;

#[test]
fn formats_errors_truncation_batches() {
    let (td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let data = td.path().join("data");
    let chat = |u: &str, a: &str| json!({"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]});
    let train: Vec<_> = (0..10).map(|i| chat(&"word ".repeat(i + 1), &format!("answer {i}"))).collect();
    write_jsonl(&data, "train", &train);
    write_jsonl(&data, "valid", &[json!({"prompt": "p", "completion": "c"})]);
    write_jsonl(&data, "test", &[json!({"text": "some text"})]);
    let s = load_dir(&data, &tok, 2048).unwrap();
    assert_eq!(s.train.as_ref().unwrap().format, Format::Chat);
    assert_eq!(s.valid.as_ref().unwrap().format, Format::Completions);
    assert_eq!(s.test.as_ref().unwrap().format, Format::Text);

    // A bad line names the file and the line.
    std::fs::write(data.join("bad.jsonl"), "{\"text\": \"a\"}\n\n{\"messages\": 3}\n").unwrap();
    let e = load_split(&data.join("bad.jsonl"), &tok, 2048).unwrap_err();
    match &e {
        Error::Data { file, line, .. } => {
            assert!(file.ends_with("bad.jsonl"));
            assert_eq!(*line, 3);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("bad.jsonl:3"), "{e}");
    std::fs::write(data.join("bad2.jsonl"), "not json\n").unwrap();
    assert!(load_split(&data.join("bad2.jsonl"), &tok, 2048).unwrap_err().to_string().contains("bad2.jsonl:1: invalid JSON"));

    // Truncation is counted; an example with no trained token left is skipped.
    let ds = load_split(&data.join("train.jsonl"), &tok, 12).unwrap().unwrap();
    assert!(ds.truncated > 0);
    assert!(ds.examples.iter().all(|e| e.tokens.len() <= 12));
    assert_eq!(ds.examples.len() + ds.skipped, 10);

    // Batches: grouped by length, padded, masks zero on padding; order deterministic by seed,
    // position resumable.
    let ds = s.train.unwrap();
    let mut b1 = Batcher::new(&ds, 3, 42);
    assert_eq!(b1.batches_per_epoch(), 4);
    let seq1: Vec<_> = (0..9).map(|_| b1.next_batch(&ds, tok.pad_id)).collect();
    let mut b2 = Batcher::new(&ds, 3, 42);
    let first: Vec<_> = (0..5).map(|_| b2.next_batch(&ds, tok.pad_id)).collect();
    assert_eq!(&seq1[..5], &first[..]);
    let pos = b2.position;
    assert_eq!((pos.epoch, pos.index), (1, 1));
    let mut b3 = Batcher::new(&ds, 3, 42);
    b3.position = pos;
    let rest: Vec<_> = (0..4).map(|_| b3.next_batch(&ds, tok.pad_id)).collect();
    assert_eq!(&seq1[5..], &rest[..]);
    let mut other = Batcher::new(&ds, 3, 7);
    let seq_other: Vec<_> = (0..4).map(|_| other.next_batch(&ds, tok.pad_id)).collect();
    assert_ne!(&seq1[..4], &seq_other[..]);
    for b in &seq1 {
        assert_eq!(b.inputs.len(), b.batch * b.len);
        assert_eq!(b.tokens, b.weights.iter().filter(|w| **w == 1.0).count());
        // Padding positions (input == pad after the end) carry no weight.
        for r in 0..b.batch {
            for j in 0..b.len {
                if b.inputs[r * b.len + j] == tok.pad_id as i32 && b.targets[r * b.len + j] == tok.pad_id as i32 {
                    assert_eq!(b.weights[r * b.len + j], 0.0);
                }
            }
        }
    }
}

/// A compiled run's batches: rows padded to a multiple of 32 keep their tokens and weights in
/// place, the new positions are padding with weight 0, and a length already at a multiple stays.
#[test]
fn padding_a_batch_to_a_multiple_keeps_every_row() {
    let a = Tokenized { tokens: (1..=40).collect(), mask: (0..40).map(|i| i >= 30).collect() };
    let b = Tokenized { tokens: (100..107).collect(), mask: vec![true; 7] };
    let plain = collate(&[&a, &b], 0);
    assert_eq!(plain.len, 39);
    let mut padded = plain.clone();
    padded.pad_len_to_multiple(32, 0);
    assert_eq!((padded.batch, padded.len, padded.tokens), (2, 64, plain.tokens));
    for r in 0..2 {
        for j in 0..64 {
            let (i, w, t) = (padded.inputs[r * 64 + j], padded.weights[r * 64 + j], padded.targets[r * 64 + j]);
            if j < 39 {
                let k = r * 39 + j;
                assert_eq!((i, t, w), (plain.inputs[k], plain.targets[k], plain.weights[k]), "row {r}, position {j}");
            } else {
                assert_eq!((i, t, w), (0, 0, 0.0), "row {r}, position {j} is padding");
            }
        }
    }
    assert_eq!(padded.weights.iter().sum::<f32>() as usize, plain.tokens);
    let mut again = padded.clone();
    again.pad_len_to_multiple(32, 0);
    assert_eq!(again, padded);
    let mut one = plain.clone();
    one.pad_len_to_multiple(1, 0);
    assert_eq!(one, plain);
}
