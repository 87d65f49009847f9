//! The configured filter plugins (`[[filter]]`), run on each batch. A filter that fails — cannot
//! be opened, traps, times out, returns garbage — fails alone: it is named in a warning and in
//! the collect counters, the examples of that batch get no verdict from it (so they are not
//! approved automatically on its behalf), and it is reopened for the next batch. After
//! [`MAX_FAILURES`] failures it is left out for the rest of the run, and still reported as a
//! failure on every later batch: fail closed, nothing it did not score is approved.
//!
//! Each filter runs on a thread of its own that lives as long as the [`Filters`]: the filters of
//! a batch run side by side, and no thread is started per batch (bench/curation.sh: threads
//! started per batch took ~20 % more wall time on a quiet machine, up to 2× beside a build).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::PluginEntry;
use crate::example::{Example, Verdict};
use crate::plugin::{FilterInstance, PluginError, PluginHost};

/// Failures after which a filter is not tried again in the same run.
pub const MAX_FAILURES: u32 = 3;

type Outcome = Result<Vec<Verdict>, PluginError>;

/// The thread that owns one filter's instance.
struct Worker {
    jobs: Sender<Arc<Vec<Example>>>,
    results: Receiver<Outcome>,
    thread: JoinHandle<()>,
}

struct Slot {
    entry: PluginEntry,
    worker: Option<Worker>,
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

impl Worker {
    /// Starts the thread of filter `entry`; it opens the plugin on its first batch, and again
    /// after a batch it failed.
    fn start(host: &PluginHost, entry: &PluginEntry) -> std::io::Result<Worker> {
        let (jobs, job_rx) = channel::<Arc<Vec<Example>>>();
        let (result_tx, results) = channel();
        let (host, e) = (host.clone(), entry.clone());
        let thread = std::thread::Builder::new().name(format!("filter {}", entry.name)).spawn(move || {
            let mut instance: Option<FilterInstance> = None;
            for examples in job_rx {
                let started = std::time::Instant::now();
                let run = std::panic::AssertUnwindSafe(|| match &mut instance {
                    Some(f) => f.evaluate(&examples),
                    None => host
                        .open_filter(&e.name, &e.plugin, &e.grants, &e.config_json)
                        .and_then(|f| instance.insert(f).evaluate(&examples)),
                });
                let outcome = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                    Err(PluginError::Plugin {
                        plugin: e.name.clone(),
                        message: "the host panicked while running this filter (a bug: please report it)".into(),
                    })
                });
                tracing::debug!("filter {:?}: {} examples in {:?}", e.name, examples.len(), started.elapsed());
                if outcome.is_err() {
                    instance = None;
                }
                if result_tx.send(outcome).is_err() {
                    break;
                }
            }
        })?;
        Ok(Worker { jobs, results, thread })
    }
}

impl Filters {
    /// The enabled filters of the config (their threads start on first use).
    pub fn new(entries: &[PluginEntry]) -> Filters {
        Filters { slots: entries.iter().filter(|e| e.enabled).map(|e| Slot { entry: e.clone(), worker: None, failures: 0 }).collect() }
    }

    /// Runs every filter over `examples`, side by side: per example, the verdicts by filter
    /// name (in config order), and the failures.
    pub fn evaluate(&mut self, host: &PluginHost, examples: Vec<Example>) -> (Vec<Vec<(String, Verdict)>>, Vec<Failure>) {
        let n = examples.len();
        let mut verdicts: Vec<Vec<(String, Verdict)>> = vec![Vec::new(); n];
        let mut failures = Vec::new();
        if n == 0 {
            return (verdicts, failures);
        }
        // Hand the batch to every filter's thread, then collect in config order. Per filter:
        // not asked (left out), or whether the batch reached its thread.
        let examples = Arc::new(examples);
        let sent: Vec<Option<Result<(), String>>> = self
            .slots
            .iter_mut()
            .map(|slot| {
                if slot.failures >= MAX_FAILURES {
                    // Left out, so fail closed: its missing verdict still counts as a failure.
                    return None;
                }
                if slot.worker.is_none() {
                    match Worker::start(host, &slot.entry) {
                        Ok(w) => slot.worker = Some(w),
                        Err(e) => return Some(Err(format!("cannot start a thread for it: {e}"))),
                    }
                }
                let worker = slot.worker.as_ref().expect("started");
                Some(worker.jobs.send(examples.clone()).map_err(|_| "its thread has stopped".to_string()))
            })
            .collect();
        for (slot, sent) in self.slots.iter_mut().zip(sent) {
            let outcome = match sent {
                None => {
                    failures.push(Failure {
                        filter: slot.entry.name.clone(),
                        error: format!("left out after failing {MAX_FAILURES} times in this run"),
                        given_up: true,
                    });
                    continue;
                }
                Some(Err(why)) => Err(why),
                Some(Ok(())) => match slot.worker.as_ref().map(|w| w.results.recv()) {
                    Some(Ok(Ok(vs))) => Ok(vs),
                    Some(Ok(Err(err))) => Err(err.to_string()),
                    _ => Err("its thread stopped unexpectedly (a bug: please report it)".to_string()),
                },
            };
            let e = &slot.entry;
            match outcome {
                Ok(vs) => {
                    for (i, v) in vs.into_iter().enumerate() {
                        verdicts[i].push((e.name.clone(), v));
                    }
                }
                Err(msg) => {
                    if slot.worker.as_ref().is_some_and(|w| w.thread.is_finished()) {
                        slot.worker = None;
                    }
                    slot.failures += 1;
                    let given_up = slot.failures >= MAX_FAILURES;
                    tracing::warn!(
                        "filter {:?} (plugin {}) failed on a batch of {n}: {msg}{}",
                        e.name,
                        e.plugin_text,
                        if given_up { "; left out for the rest of this run" } else { "; these examples get no verdict from it" }
                    );
                    failures.push(Failure { filter: e.name.clone(), error: msg, given_up });
                }
            }
        }
        (verdicts, failures)
    }
}

impl Drop for Filters {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(w) = slot.worker.take() {
                // Closing the job channel ends the thread's loop.
                drop(w.jobs);
                let _ = w.thread.join();
            }
        }
    }
}
