//! A source built against the previous interface version, `sam:plugin@0.1.0` (the frozen text in
//! plugin-api/wit-0.1.0, without `llm`): the host must keep loading and running it beside
//! 0.2.0 plugins. It logs through the host and emits two chat examples.
wit_bindgen::generate!({ world: "source", path: "../../../plugin-api/wit-0.1.0" });

use exports::sam::plugin::collector::{Batch, Guest, GuestSession, Session};
use sam::plugin::log::{log, Level};
use sam::plugin::types::{Example, Kind, Message, Role};

struct Legacy(std::cell::Cell<bool>);

impl GuestSession for Legacy {
    fn open(_config: String, _checkpoint: Option<String>) -> Result<Session, String> {
        log(Level::Info, "legacy 0.1.0 source opened");
        Ok(Session::new(Legacy(std::cell::Cell::new(false))))
    }
    fn next(&self, _max: u32) -> Result<Option<Batch>, String> {
        if self.0.replace(true) {
            return Ok(None);
        }
        let ex = |i: u32| Example {
            kind: Kind::Chat,
            task: "legacy".into(),
            messages: vec![
                Message { role: Role::User, content: format!("Which interface version built legacy example {i}?") },
                Message { role: Role::Assistant, content: format!("sam:plugin 0.1.0 built legacy example number {i}.") },
            ],
            rejected: None,
            provenance: format!("legacy#{i}"),
            metadata: String::new(),
        };
        Ok(Some(Batch { examples: vec![ex(1), ex(2)], discarded: vec![], checkpoint: Some("2".into()) }))
    }
    fn estimate(&self) -> Option<u64> {
        None
    }
}

struct Component;
impl Guest for Component {
    type Session = Legacy;
}
export!(Component);
