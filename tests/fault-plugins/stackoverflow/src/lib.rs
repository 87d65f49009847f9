//! Recurses without bound on its first `next`.
use sam_plugin::source::Batch;

struct Deep;

#[inline(never)]
fn down(n: u64) -> u64 {
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    1 + down(std::hint::black_box(n + 1))
}

impl sam_plugin::Source for Deep {
    fn open(_config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        Ok(Deep)
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        let n = down(0);
        Err(format!("recursion ended at {n}?"))
    }
}
sam_plugin::export_source!(Deep);
