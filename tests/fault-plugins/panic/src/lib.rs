//! Panics on its first `next`.
use sam_plugin::source::Batch;

struct Panicky;

impl sam_plugin::Source for Panicky {
    fn open(_config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        Ok(Panicky)
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        panic!("fault plugin panicked on purpose");
    }
}
sam_plugin::export_source!(Panicky);
