//! A plugin instance's sessions: the calls into a source or a filter, each under its deadline,
//! with what a failed call leaves behind (a dead session, the guest's panic message).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;
use wasmtime::Store;

use super::bindings::filter::Filter;
use super::bindings::source::Source;
use super::state::HostState;
use super::{validate, PluginError, MAX_IDLE_BATCHES, MAX_WASM_STACK};
use crate::example::{Example, Verdict};

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
        data.caps.denial = None;
        data.caps.deadline = Some(Instant::now() + self.timeout);
        Ok(())
    }

    pub(super) fn instantiate<B>(&mut self, f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<B>) -> Result<B, PluginError> {
        self.arm()?;
        f(&mut self.store).map_err(|e| self.kill(e))
    }

    /// Calls into the guest: traps kill the session; an `Err(string)` from the guest becomes
    /// [`PluginError::Plugin`] (or [`PluginError::Denied`] when a capability refused it).
    pub(super) fn call<R>(&mut self, f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<Result<R, String>>) -> Result<R, PluginError> {
        self.arm()?;
        match f(&mut self.store) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => {
                let plugin = self.plugin.to_string();
                match self.store.data_mut().caps.denial.take() {
                    Some(d) => Err(PluginError::Denied { plugin, capability: d.capability.to_string(), path: d.path }),
                    None => Err(PluginError::Plugin {
                        plugin,
                        message: crate::capability::truncate_str(&message, 4096).to_string(),
                    }),
                }
            }
            Err(e) => Err(self.kill(e)),
        }
    }

    /// Marks the session dead after a trap; the error says why.
    pub(super) fn kill(&mut self, e: wasmtime::Error) -> PluginError {
        let err = self.classify(e);
        self.dead = Some(err.cause().to_string());
        err
    }

    /// Marks the session dead after malformed output.
    pub(super) fn malformed(&mut self, what: String) -> PluginError {
        self.dead = Some("malformed output".into());
        PluginError::Malformed { plugin: self.plugin.to_string(), what }
    }

    /// Turns a wasmtime error (a trap, mostly) into the error that says why.
    pub(super) fn classify(&mut self, e: wasmtime::Error) -> PluginError {
        let plugin = self.plugin.to_string();
        let data = self.store.data_mut();
        if data.limiter.hit {
            return PluginError::OutOfMemory { plugin, limit_bytes: self.memory_bytes };
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

/// An open source plugin. `Send`; not shared between threads.
pub struct SourceSession {
    pub(super) inst: Instance,
    pub(super) bindings: Source,
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
        let (bindings, session) = (&self.bindings, self.session);
        let batch = self.inst.call(|store| bindings.sam_plugin_collector().session().call_next(store, session, max))?;
        let Some(batch) = batch else {
            self.done = true;
            return Ok(None);
        };
        let batch = validate::source_batch(&self.inst.plugin, batch, max).map_err(|what| self.inst.malformed(what))?;
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
        let (bindings, session) = (&self.bindings, self.session);
        self.inst
            .call(|store| bindings.sam_plugin_collector().session().call_estimate(store, session).map(Ok))
            .ok()
            .flatten()
    }

    /// What the plugin wrote to stderr so far (bounded), for diagnostics.
    pub fn stderr(&self) -> String {
        self.inst.store.data().stderr.contents()
    }
}

/// An open filter plugin. `Send`; not shared between threads.
pub struct FilterInstance {
    pub(super) inst: Instance,
    pub(super) bindings: Filter,
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
        let (bindings, filter) = (&self.bindings, self.filter);
        let verdicts = self.inst.call(|store| bindings.sam_plugin_judge().filter().call_evaluate(store, filter, &wit))?;
        validate::verdicts(verdicts, examples.len()).map_err(|what| self.inst.malformed(what))
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
