//! A filter built against a future, incompatible interface version (`sam:plugin@0.3.0`, a copy
//! of the WIT with only the version changed): the host must refuse to load it.
wit_bindgen::generate!({ world: "filter", path: "wit" });

use exports::sam::plugin::judge::{Filter, Guest, GuestFilter};
use sam::plugin::types::{Example, Verdict};

struct Future;

impl GuestFilter for Future {
    fn open(_config: String) -> Result<Filter, String> {
        Ok(Filter::new(Future))
    }
    fn evaluate(&self, _examples: Vec<Example>) -> Result<Vec<Verdict>, String> {
        Ok(Vec::new())
    }
}

struct Component;
impl Guest for Component {
    type Filter = Future;
}
export!(Component);
