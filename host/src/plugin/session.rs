//! A plugin instance's sessions: the calls into a source or a filter, each under its deadline,
//! with what a failed call leaves behind (a dead session, the guest's panic message).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;
use wasmtime::Store;

use super::bindings::filter::Filter;
use super::bindings::source::exports::sam::plugin::collector::Batch;
use super::bindings::source::Source;
use super::bindings::{filter_v01, source_v01};
use super::state::{HostState, LimitHit, MAX_INSTANCES, MAX_TABLES, MAX_TABLE_ELEMENTS};
use super::{validate, PluginError, MAX_IDLE_BATCHES, MAX_WASM_STACK};
use crate::example::{Example, Verdict};

/// Extra wall time past the epoch deadline before the call's future is dropped: wasm code that
/// runs over is stopped by the epoch trap (a clearer error), a call blocked in an async host call
/// by the timeout.
const GRACE: Duration = Duration::from_millis(100);

/// A call ran past its deadline and was dropped.
#[derive(Debug)]
pub(super) struct Overdue;

pub(super) type Driven<T> = Result<T, Overdue>;

/// Runs one call into a plugin on this thread, dropping it at `timeout` (+ [`GRACE`]) even when
/// it is blocked in an async host call such as a WASI sleep, where epoch interruption cannot
/// reach. Host functions that block synchronously (git, SQLite) bound themselves with the
/// capability deadline.
pub(super) fn drive<F: Future>(timeout: Duration, call: F) -> Driven<F::Output> {
    // The timer must be made inside the runtime (`in_tokio` enters wasmtime-wasi's own).
    wasmtime_wasi::runtime::in_tokio(async move { tokio::time::timeout(timeout + GRACE, call).await }).map_err(|_| Overdue)
}

/// A source instance's exports, by the interface version it was built against.
pub(super) enum SourceApi {
    V02(Source),
    V01(source_v01::Source),
}

/// A filter instance's exports, by interface version.
pub(super) enum FilterApi {
    V02(Filter),
    V01(filter_v01::Filter),
}

/// A 0.1.0 batch as the current type (the record is the same).
fn batch_v01(b: source_v01::exports::sam::plugin::collector::Batch) -> Batch {
    Batch { examples: b.examples, discarded: b.discarded, checkpoint: b.checkpoint }
}

/// One plugin instance: its store and the bookkeeping of calls into it.
pub(super) struct Instance {
    pub(super) store: Store<HostState>,
    pub(super) plugin: Arc<str>,
    /// Why the session died, once it has.
    pub(super) dead: Option<String>,
    /// Consecutive source batches that carried nothing (no examples, no discards).
    pub(super) idle_batches: u32,
    pub(super) ticks: u64,
    pub(super) timeout: Duration,
    pub(super) memory_bytes: usize,
}

impl Instance {
    pub(super) fn arm(&mut self) -> Result<(), PluginError> {
        if let Some(cause) = &self.dead {
            return Err(PluginError::Dead { plugin: self.plugin.to_string(), cause: cause.clone() });
        }
        self.store.set_epoch_deadline(self.ticks);
        let data = self.store.data_mut();
        data.log.new_call();
        data.caps.denial = None;
        data.caps.deadline = Some(Instant::now() + self.timeout);
        Ok(())
    }

    /// Ends a call started with [`Instance::arm`] and driven by [`drive`]: a trap or a missed
    /// deadline kills the session.
    pub(super) fn finish_trap<B>(&mut self, out: Driven<wasmtime::Result<B>>) -> Result<B, PluginError> {
        if let Some(report) = self.store.data_mut().log.take_report() {
            tracing::warn!(plugin = &*self.plugin, "{report}");
        }
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.kill(e)),
            Err(Overdue) => Err(self.overdue()),
        }
    }

    /// Like [`Instance::finish_trap`] for guest functions returning `result<_, string>`: an
    /// `Err(string)` from the guest becomes [`PluginError::Plugin`] (or [`PluginError::Denied`]
    /// when a capability refused it).
    pub(super) fn finish<R>(&mut self, out: Driven<wasmtime::Result<Result<R, String>>>) -> Result<R, PluginError> {
        match self.finish_trap(out)? {
            Ok(v) => Ok(v),
            Err(message) => {
                let plugin = self.plugin.to_string();
                match self.store.data_mut().caps.denial.take() {
                    Some(d) => Err(PluginError::Denied { plugin, capability: d.capability.to_string(), path: d.path }),
                    None => Err(self.clean_err(PluginError::Plugin {
                        plugin,
                        message: crate::capability::truncate_str(&message, 4096).to_string(),
                    })),
                }
            }
        }
    }

    /// The call outlived its deadline while blocked in the host (a WASI sleep or poll): the
    /// future was dropped mid-call, so the instance cannot be entered again.
    fn overdue(&mut self) -> PluginError {
        self.dead = Some("timeout".into());
        PluginError::Timeout { plugin: self.plugin.to_string(), seconds: self.timeout.as_secs_f64() }
    }

    /// Marks the session dead after a trap; the error says why.
    pub(super) fn kill(&mut self, e: wasmtime::Error) -> PluginError {
        let err = self.classify(e);
        self.dead = Some(err.cause().to_string());
        self.clean_err(err)
    }

    /// The error with the plugin's own text in it stripped and scrubbed.
    pub(super) fn clean_err(&self, e: PluginError) -> PluginError {
        let text = &self.store.data().text;
        e.map_text(|s| text.clean(s))
    }

    /// Marks the session dead after malformed output.
    pub(super) fn malformed(&mut self, what: String) -> PluginError {
        self.dead = Some("malformed output".into());
        self.clean_err(PluginError::Malformed { plugin: self.plugin.to_string(), what })
    }

    /// Turns a wasmtime error (a trap, mostly) into the error that says why.
    pub(super) fn classify(&mut self, e: wasmtime::Error) -> PluginError {
        let plugin = self.plugin.to_string();
        let data = self.store.data_mut();
        match data.limiter.hit {
            Some(LimitHit::Memory) => return PluginError::OutOfMemory { plugin, limit_bytes: self.memory_bytes },
            Some(LimitHit::TableElements) => {
                let what = format!("its tables would hold more than {MAX_TABLE_ELEMENTS} elements together");
                return PluginError::OverLimit { plugin, what };
            }
            None => {}
        }
        // wasmtime's own refusal when a store's count of memories, tables or instances (set by
        // the limiter) would be passed: "resource limit exceeded: memory count too high at 2".
        let chain = format!("{e:#}");
        let counts = [
            ("one linear memory".to_string(), "memory count too high"),
            (format!("{MAX_TABLES} tables"), "table count too high"),
            (format!("{MAX_INSTANCES} core instances"), "instance count too high"),
        ];
        for (what, marker) in counts {
            if chain.contains(marker) {
                let what = format!(
                    "it creates more than {what} (a plugin gets one linear memory of at most [plugins] memory_mb, \
                     {MAX_TABLES} tables and {MAX_INSTANCES} core instances)"
                );
                return PluginError::OverLimit { plugin, what };
            }
        }
        let stderr = data.stderr.contents();
        let backtrace = e.downcast_ref::<wasmtime::WasmBacktrace>().map(|b| b.to_string()).unwrap_or_default();
        if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
            match trap {
                wasmtime::Trap::Interrupt => {
                    return PluginError::Timeout { plugin, seconds: self.timeout.as_secs_f64() }
                }
                wasmtime::Trap::StackOverflow => {
                    return PluginError::Trap {
                        plugin,
                        message: format!("stack overflow: recursion deeper than the {} KiB wasm stack", MAX_WASM_STACK >> 10),
                        backtrace: String::new(),
                    }
                }
                _ => {}
            }
            if let Some(p) = panic_message(&stderr) {
                return PluginError::Panic { plugin, stderr: p };
            }
            if stderr.contains("memory allocation of") {
                return PluginError::OutOfMemory { plugin, limit_bytes: self.memory_bytes };
            }
            return PluginError::Trap { plugin, message: trap.to_string(), backtrace: bound(&backtrace, 4096) };
        }
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return PluginError::Trap { plugin, message: format!("the plugin called exit({})", exit.0), backtrace: String::new() };
        }
        if let Some(p) = panic_message(&stderr) {
            return PluginError::Panic { plugin, stderr: p };
        }
        PluginError::Trap { plugin, message: bound(&format!("{e:#}"), 4096), backtrace: bound(&backtrace, 4096) }
    }
}

fn bound(s: &str, max: usize) -> String {
    let t = crate::capability::truncate_str(s, max);
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t.to_string()
    }
}

/// The guest's panic message (Rust's `panicked at …` and what follows), if it printed one.
pub(super) fn panic_message(stderr: &str) -> Option<String> {
    let at = stderr.rfind("panicked at")?;
    let start = stderr[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let msg = stderr[start..].trim();
    let msg = msg.strip_prefix("thread '<unnamed>' ").unwrap_or(msg);
    let msg = msg.strip_prefix("thread 'main' ").unwrap_or(msg);
    Some(bound(msg, 2048))
}

/// One pull's worth of examples from a source, validated.
#[derive(Debug)]
pub struct SourceBatch {
    pub examples: Vec<Example>,
    /// Examples the plugin chose not to emit: (reason, count).
    pub discarded: Vec<(String, u32)>,
    /// The plugin's checkpoint after this batch; store it with the batch.
    pub checkpoint: Option<String>,
}

impl SourceBatch {
    /// Bytes of text the batch carries (examples, discard reasons, checkpoint): what a source's
    /// byte budget counts.
    pub fn bytes(&self) -> u64 {
        let example = |e: &Example| {
            e.task.len()
                + e.provenance.len()
                + e.messages.iter().map(|m| m.content.len()).sum::<usize>()
                + e.rejected.as_ref().map_or(0, String::len)
                + if e.metadata.as_object().is_some_and(|m| m.is_empty()) { 0 } else { e.metadata.to_string().len() }
        };
        let n = self.examples.iter().map(example).sum::<usize>()
            + self.discarded.iter().map(|(r, _)| r.len()).sum::<usize>()
            + self.checkpoint.as_ref().map_or(0, String::len);
        n as u64
    }
}

/// An open source plugin. `Send`; not shared between threads.
pub struct SourceSession {
    pub(super) inst: Instance,
    pub(super) bindings: SourceApi,
    pub(super) session: ResourceAny,
    pub(super) done: bool,
}

impl SourceSession {
    /// The configured name of the plugin.
    pub fn name(&self) -> &str {
        &self.inst.plugin
    }

    /// The next batch of at most `max` examples, `None` when the source is done.
    pub fn next(&mut self, max: u32) -> Result<Option<SourceBatch>, PluginError> {
        if self.done {
            return Ok(None);
        }
        let max = max.max(1);
        self.inst.arm()?;
        let (store, timeout) = (&mut self.inst.store, self.inst.timeout);
        let out = match &self.bindings {
            SourceApi::V02(b) => drive(timeout, b.sam_plugin_collector().session().call_next(store, self.session, max)),
            SourceApi::V01(b) => drive(timeout, b.sam_plugin_collector().session().call_next(store, self.session, max))
                .map(|r| r.map(|r| r.map(|b| b.map(batch_v01)))),
        };
        let batch = self.inst.finish(out)?;
        let Some(batch) = batch else {
            self.done = true;
            return Ok(None);
        };
        let mut batch = validate::source_batch(&self.inst.plugin, batch, max).map_err(|what| self.inst.malformed(what))?;
        // Examples are scrubbed by curation; the rest of the batch is scrubbed here.
        let text = &self.inst.store.data().text;
        for (reason, _) in &mut batch.discarded {
            text.clean_in_place(reason);
        }
        if let Some(c) = &mut batch.checkpoint {
            if text.clean_checkpoint(c) {
                tracing::warn!(
                    plugin = &*self.inst.plugin,
                    "the plugin's checkpoint held what looks like a secret: it is stored redacted (the next collect may read some items again)"
                );
            }
        }
        if batch.examples.is_empty() && batch.discarded.is_empty() {
            self.inst.idle_batches += 1;
            if self.inst.idle_batches >= MAX_IDLE_BATCHES {
                return Err(self.inst.malformed(format!(
                    "{MAX_IDLE_BATCHES} empty batches in a row; a source must return `none` when it is done"
                )));
            }
        } else {
            self.inst.idle_batches = 0;
        }
        Ok(Some(batch))
    }

    /// How many examples remain, if the plugin can tell (for progress bars). Errors count as
    /// "unknown" (a trap still kills the session).
    pub fn estimate(&mut self) -> Option<u64> {
        self.inst.arm().ok()?;
        let (store, timeout) = (&mut self.inst.store, self.inst.timeout);
        let out = match &self.bindings {
            SourceApi::V02(b) => drive(timeout, b.sam_plugin_collector().session().call_estimate(store, self.session)),
            SourceApi::V01(b) => drive(timeout, b.sam_plugin_collector().session().call_estimate(store, self.session)),
        };
        self.inst.finish_trap(out).ok().flatten()
    }

    /// What the plugin wrote to stderr so far (bounded), for diagnostics.
    pub fn stderr(&self) -> String {
        self.inst.store.data().stderr.contents()
    }
}

/// An open filter plugin. `Send`; not shared between threads.
pub struct FilterInstance {
    pub(super) inst: Instance,
    pub(super) bindings: FilterApi,
    pub(super) filter: ResourceAny,
}

impl FilterInstance {
    /// The configured name of the plugin.
    pub fn name(&self) -> &str {
        &self.inst.plugin
    }

    /// Exactly one verdict per example, validated (score in [0,1], complexity 1..=10).
    pub fn evaluate(&mut self, examples: &[Example]) -> Result<Vec<Verdict>, PluginError> {
        if examples.is_empty() {
            return Ok(Vec::new());
        }
        let wit: Vec<_> = examples.iter().map(validate::to_wit).collect();
        self.inst.arm()?;
        let (store, timeout) = (&mut self.inst.store, self.inst.timeout);
        let out = match &self.bindings {
            FilterApi::V02(b) => drive(timeout, b.sam_plugin_judge().filter().call_evaluate(store, self.filter, &wit)),
            FilterApi::V01(b) => drive(timeout, b.sam_plugin_judge().filter().call_evaluate(store, self.filter, &wit)),
        };
        let verdicts = self.inst.finish(out)?;
        let mut verdicts = validate::verdicts(verdicts, examples.len()).map_err(|what| self.inst.malformed(what))?;
        let text = &self.inst.store.data().text;
        for v in &mut verdicts {
            v.flags.iter_mut().chain(v.fired.iter_mut()).chain(std::iter::once(&mut v.rule)).for_each(|s| text.clean_in_place(s));
            if let Some(r) = &mut v.reject_reason {
                text.clean_in_place(r);
            }
        }
        Ok(verdicts)
    }

    pub fn stderr(&self) -> String {
        self.inst.store.data().stderr.contents()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_extracted() {
        let s = "some log\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with RUST_BACKTRACE\n";
        let m = panic_message(s).unwrap();
        assert!(m.starts_with("panicked at src/lib.rs:3:5:\nboom"), "{m}");
    }
}
