//! Opens the repository `config.path` and walks it from `config.tip` (default `HEAD`): aimed at
//! repositories whose objects live outside the grant (alternates, linked worktrees) and at
//! searching revisions (`:/text`). Emits one example per commit it could read.
use sam_plugin::source::git::{Repository, WalkOptions};
use sam_plugin::source::{chat, Batch};

struct Probe {
    path: String,
    tip: String,
    done: bool,
}

impl sam_plugin::Source for Probe {
    fn open(config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        let s = |k: &str, d: &str| config.get(k).and_then(|v| v.as_str()).unwrap_or(d).to_string();
        Ok(Probe { path: s("path", ""), tip: s("tip", "HEAD"), done: false })
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let repo = Repository::open(&self.path)?;
        let opts = WalkOptions { tip: self.tip.clone(), hide: vec![], max_patch_bytes: 1000, skip_paths: vec![], include_merges: true };
        let walk = repo.walk(&opts)?;
        let commits = walk.next(100)?;
        let examples = commits
            .iter()
            .map(|c| chat("probe", format!("What did commit {} say?", c.id), format!("It said: {}", c.message.trim()), format!("probe#{}", c.id)))
            .collect();
        Ok(Some(Batch { examples, discarded: vec![], checkpoint: None }))
    }
}
sam_plugin::export_source!(Probe);
