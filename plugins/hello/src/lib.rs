use sam_plugin::source::{Batch, chat};
struct Hello { done: bool }
impl sam_plugin::Source for Hello {
    fn open(_config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> { Ok(Hello { done: false }) }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        if std::mem::replace(&mut self.done, true) { return Ok(None) }
        Ok(Some(Batch { examples: vec![chat("greeting", "Say hello", "Hello!", "hello#1")], discarded: vec![], checkpoint: None }))
    }
}
sam_plugin::export_source!(Hello);
