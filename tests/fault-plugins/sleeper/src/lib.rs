//! Blocks in a host call instead of running wasm: `std::thread::sleep` on wasip2 waits in
//! `wasi:io/poll`, where epoch interruption never fires. `when = "open"` sleeps in `open`,
//! otherwise in the first `next`.
use sam_plugin::source::Batch;

struct Sleeper;

fn nap() {
    std::thread::sleep(std::time::Duration::from_secs(3600));
}

impl sam_plugin::Source for Sleeper {
    fn open(config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        if config.get("when").and_then(|v| v.as_str()) == Some("open") {
            nap();
        }
        Ok(Sleeper)
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        nap();
        Ok(None)
    }
}
sam_plugin::export_source!(Sleeper);
