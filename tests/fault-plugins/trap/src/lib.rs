//! Executes `unreachable` (a bare trap, no panic message) on its first `next`.
use sam_plugin::source::Batch;

struct Trap;

impl sam_plugin::Source for Trap {
    fn open(_config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        Ok(Trap)
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
        #[cfg(not(target_arch = "wasm32"))]
        std::process::abort();
    }
}
sam_plugin::export_source!(Trap);
