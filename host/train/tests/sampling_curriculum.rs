//! The data hooks for correction weighting and curriculum: a line's `"weight"` is how often the
//! example is drawn per epoch, its `"phase"` orders the epoch (all of phase 0 first, …);
//! evaluation ignores both; bad values name the line.

mod common;

use brain_train::data::{load_split, Batcher};
use brain_train::tokenizer::Tokenizer;
use common::{small_spec, tiny, write_jsonl};
use serde_json::json;

fn line(i: usize, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"messages": [{"role": "user", "content": format!("q{i}")}, {"role": "assistant", "content": format!("answer {i}")}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn weights_and_phases_shape_each_epoch() {
    let (td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let data = td.path().join("d");
    write_jsonl(
        &data,
        "train",
        &[
            line(0, json!({"phase": 1})),
            line(1, json!({"weight": 3, "phase": 0})), // a correction, oversampled
            line(2, json!({"weight": 0})),             // never drawn
            line(3, json!({"phase": 2})),
            line(4, json!({})),
        ],
    );
    let ds = load_split(&data.join("train.jsonl"), &tok, 512).unwrap().unwrap();
    assert_eq!(ds.weights, vec![1.0, 3.0, 0.0, 1.0, 1.0]);
    assert_eq!(ds.phases, vec![1, 0, 0, 2, 0]);
    for seed in 0..5 {
        let mut b = Batcher::new(&ds, 1, seed);
        assert_eq!(b.batches_per_epoch(), 6);
        assert_eq!(b.phase_batches(), vec![(0, 4), (1, 1), (2, 1)]);
        let epoch: Vec<usize> = (0..6).map(|_| b.next_indices()[0]).collect();
        let mut phase0 = epoch[..4].to_vec();
        phase0.sort();
        assert_eq!(phase0, vec![1, 1, 1, 4]);
        assert_eq!(&epoch[4..], &[0, 3]);
        // Evaluation sees every example once.
        assert_eq!(b.eval_groups().iter().flatten().count(), 5);
    }
}

#[test]
fn without_the_keys_nothing_changes() {
    let (td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let plain: Vec<_> = (0..7).map(|i| line(i, json!({}))).collect();
    let explicit: Vec<_> = (0..7).map(|i| line(i, json!({"weight": 1.0, "phase": 0}))).collect();
    write_jsonl(&td.path().join("a"), "train", &plain);
    write_jsonl(&td.path().join("b"), "train", &explicit);
    let a = load_split(&td.path().join("a/train.jsonl"), &tok, 512).unwrap().unwrap();
    let b = load_split(&td.path().join("b/train.jsonl"), &tok, 512).unwrap().unwrap();
    let (mut ba, mut bb) = (Batcher::new(&a, 2, 9), Batcher::new(&b, 2, 9));
    for _ in 0..12 {
        assert_eq!(ba.next_batch(&a, tok.pad_id), bb.next_batch(&b, tok.pad_id));
    }
}

#[test]
fn bad_values_name_the_line() {
    let (td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    write_jsonl(&td.path().join("c"), "train", &[line(0, json!({})), line(1, json!({"weight": -1}))]);
    let e = load_split(&td.path().join("c/train.jsonl"), &tok, 512).unwrap_err().to_string();
    assert!(e.contains("train.jsonl:2") && e.contains("weight"), "{e}");
    write_jsonl(&td.path().join("c"), "train", &[line(0, json!({"phase": 1.5}))]);
    let e = load_split(&td.path().join("c/train.jsonl"), &tok, 512).unwrap_err().to_string();
    assert!(e.contains("train.jsonl:1") && e.contains("phase"), "{e}");
}
