//! Loops forever on its first `next`.
use sam_plugin::source::Batch;

struct Spin;

impl sam_plugin::Source for Spin {
    fn open(_config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        Ok(Spin)
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}
sam_plugin::export_source!(Spin);
