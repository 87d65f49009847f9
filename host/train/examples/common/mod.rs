//! Helpers shared by the examples (each example is its own binary; this is `mod common;` in each).

/// CPU time (user + system) of this process so far, from /proc/self/stat (Linux; 100 Hz ticks):
/// throughput per CPU second does not depend on how busy the shared machine is.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}
