//! Allocates (and touches) memory without bound on its first `next`.
use sam_plugin::source::Batch;

struct Bomb;

impl sam_plugin::Source for Bomb {
    fn open(_config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        Ok(Bomb)
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![7u8; 16 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}
sam_plugin::export_source!(Bomb);
