//! (in progress)
use sam_plugin::source::Batch;
pub struct Stub;
impl sam_plugin::Source for Stub {
    fn open(_config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> { Ok(Stub) }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> { Ok(None) }
}
sam_plugin::export_source!(Stub);
