//! A filter whose verdicts are wrong; `config.mode`: `count` (default: one verdict too many),
//! `nan` (score NaN), `score` (score 1.5), `complexity` (complexity 0).
use sam_plugin::filter::{Example, Verdict};

fn verdict(score: f32, complexity: u8) -> Verdict {
    Verdict { score, flags: vec![], complexity, reject_reason: None, rule: "bad".into(), fired: vec![] }
}

struct BadFilter(String);

impl sam_plugin::filter::GuestFilter for BadFilter {
    fn open(config: String) -> Result<sam_plugin::filter::FilterResource, String> {
        let config = sam_plugin::parse_config(&config)?;
        let mode = config.get("mode").and_then(|v| v.as_str()).unwrap_or("count").to_string();
        Ok(sam_plugin::filter::FilterResource::new(BadFilter(mode)))
    }
    fn evaluate(&self, examples: Vec<Example>) -> Result<Vec<Verdict>, String> {
        let n = examples.len();
        Ok(match self.0.as_str() {
            "nan" => (0..n).map(|_| verdict(f32::NAN, 1)).collect(),
            "score" => (0..n).map(|_| verdict(1.5, 1)).collect(),
            "complexity" => (0..n).map(|_| verdict(0.5, 0)).collect(),
            _ => (0..=n).map(|_| verdict(0.5, 1)).collect(),
        })
    }
}

struct Guest;
impl sam_plugin::filter::Guest for Guest {
    type Filter = BadFilter;
}
sam_plugin::filter::__export_filter_world!(Guest);
