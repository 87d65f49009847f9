//! The configured filter plugins (`[[filter]]`), run on each batch. A filter that fails — cannot
//! be opened, traps, times out, returns garbage — fails alone: it is named in a warning and in
//! the collect counters, the examples of that batch get no verdict from it (so they are not
//! approved automatically on its behalf), and it is reopened for the next batch. After
//! [`MAX_FAILURES`] failures it is left out for the rest of the run.

use crate::config::PluginEntry;
use crate::example::{Example, Verdict};
use crate::plugin::{FilterInstance, PluginHost};

/// Failures after which a filter is not tried again in the same run.
pub const MAX_FAILURES: u32 = 3;

struct Slot {
    entry: PluginEntry,
    instance: Option<FilterInstance>,
    failures: u32,
}

pub struct Filters {
    slots: Vec<Slot>,
}

/// One filter's failure on a batch.
#[derive(Clone, Debug)]
pub struct Failure {
    pub filter: String,
    pub error: String,
    /// Whether it is now left out for the rest of the run.
    pub given_up: bool,
}

impl Filters {
    /// The enabled filters of the config (opened on first use).
    pub fn new(entries: &[PluginEntry]) -> Filters {
        Filters { slots: entries.iter().filter(|e| e.enabled).map(|e| Slot { entry: e.clone(), instance: None, failures: 0 }).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.entry.name.clone()).collect()
    }

    /// Runs every filter over `examples`: per example, the verdicts by filter name (in config
    /// order), and the failures.
    pub fn evaluate(&mut self, host: &PluginHost, examples: &[Example]) -> (Vec<Vec<(String, Verdict)>>, Vec<Failure>) {
        let mut verdicts: Vec<Vec<(String, Verdict)>> = vec![Vec::new(); examples.len()];
        let mut failures = Vec::new();
        if examples.is_empty() {
            return (verdicts, failures);
        }
        // Each filter on its own thread (instances are independent); results in config order.
        let results: Vec<Option<Result<Vec<Verdict>, crate::plugin::PluginError>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .slots
                .iter_mut()
                .map(|slot| {
                    scope.spawn(move || {
                        if slot.failures >= MAX_FAILURES {
                            return None;
                        }
                        let e = &slot.entry;
                        let started = std::time::Instant::now();
                        let result = match &mut slot.instance {
                            Some(f) => f.evaluate(examples),
                            None => host
                                .open_filter(&e.name, &e.plugin, &e.grants, &e.config_json)
                                .and_then(|f| slot.instance.insert(f).evaluate(examples)),
                        };
                        tracing::debug!("filter {:?}: {} examples in {:?}", e.name, examples.len(), started.elapsed());
                        Some(result)
                    })
                })
                .collect();
            handles.into_iter().collect::<Vec<_>>().into_iter().map(|h| h.join()).collect::<Vec<_>>()
        })
        .into_iter()
        .zip(self.names())
        .map(|(joined, plugin)| {
            joined.unwrap_or_else(|_| {
                Some(Err(crate::plugin::PluginError::Plugin {
                    plugin,
                    message: "the host panicked while running this filter (a bug: please report it)".into(),
                }))
            })
        })
        .collect();
        for (slot, result) in self.slots.iter_mut().zip(results) {
            let e = &slot.entry;
            match result {
                None => {}
                Some(Ok(vs)) => {
                    for (i, v) in vs.into_iter().enumerate() {
                        verdicts[i].push((e.name.clone(), v));
                    }
                }
                Some(Err(err)) => {
                    slot.instance = None;
                    slot.failures += 1;
                    let given_up = slot.failures >= MAX_FAILURES;
                    let msg = format!("{err}");
                    tracing::warn!(
                        "filter {:?} (plugin {}) failed on a batch of {}: {msg}{}",
                        e.name,
                        e.plugin_text,
                        examples.len(),
                        if given_up { "; left out for the rest of this run" } else { "; these examples get no verdict from it" }
                    );
                    failures.push(Failure { filter: e.name.clone(), error: msg, given_up });
                }
            }
        }
        (verdicts, failures)
    }
}
