//! Helpers shared by the examples (each example is its own binary; this is `mod common;` in each,
//! and each uses part of it).
#![allow(dead_code)]

/// CPU time (user + system) of this process so far, from /proc/self/stat (Linux; 100 Hz ticks):
/// throughput per CPU second does not depend on how busy the shared machine is.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// The synthetic LoRA batch profile_step and step_graph build their step on: 4 rows of 91
/// tokens (ids spread over the first 1,000 of the vocabulary), every target trained.
pub fn synthetic_batch(vocab_size: usize) -> brain_train::data::Batch {
    let v = vocab_size.min(1000) as i32;
    let ids: Vec<i32> = (0..4 * 92).map(|i| (i * 7919) % v).collect();
    brain_train::data::Batch {
        batch: 4,
        len: 91,
        inputs: (0..4).flat_map(|r| ids[r * 92..r * 92 + 91].to_vec()).collect(),
        targets: (0..4).flat_map(|r| ids[r * 92 + 1..r * 92 + 92].to_vec()).collect(),
        weights: vec![1.0; 4 * 91],
        tokens: 4 * 91,
    }
}
