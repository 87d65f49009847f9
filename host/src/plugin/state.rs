//! What one plugin instance's wasmtime `Store` holds: its WASI context (read-only preopens,
//! no env, no args, no network), its resource table, its memory limiter, its captured stderr and
//! its capabilities.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::text::PluginText;
use crate::capability::Capabilities;

pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemLimiter,
    pub stderr: StderrTail,
    pub caps: Capabilities,
    /// Cleans what the plugin logs, and its errors.
    pub text: Arc<PluginText>,
    pub log: LogBudget,
}

/// Log lines a plugin may write in one call, and over its whole session.
pub(crate) const LOG_LINES_PER_CALL: u32 = 200;
pub(crate) const LOG_LINES_PER_SESSION: u64 = 5_000;

/// Rate limit of a plugin's log lines: past the limits lines are counted, not written, and the
/// runtime logs one line saying how many were dropped when the call ends.
#[derive(Default)]
pub(crate) struct LogBudget {
    this_call: u32,
    total: u64,
    /// Dropped during the current call, not yet reported.
    dropped: u64,
    /// The session's limit was reached and said so (later drops go unreported).
    exhausted: bool,
}

impl LogBudget {
    /// Whether one more line may be written.
    pub fn admit(&mut self) -> bool {
        if self.this_call >= LOG_LINES_PER_CALL || self.total >= LOG_LINES_PER_SESSION {
            self.dropped += 1;
            return false;
        }
        self.this_call += 1;
        self.total += 1;
        true
    }

    /// A new call begins; returns the lines dropped in the one before.
    pub fn new_call(&mut self) -> u64 {
        self.this_call = 0;
        std::mem::take(&mut self.dropped)
    }

    /// What to log about the lines dropped in the call that just ended: one line per call
    /// while under the session limit, one line when the session limit is reached, then nothing
    /// (the host must not flood the log in the plugin's place).
    pub fn take_report(&mut self) -> Option<String> {
        let dropped = std::mem::take(&mut self.dropped);
        if dropped == 0 || self.exhausted {
            return None;
        }
        if self.total >= LOG_LINES_PER_SESSION {
            self.exhausted = true;
            return Some(format!("this plugin wrote {LOG_LINES_PER_SESSION} log lines, its limit for the run: its further lines are dropped"));
        }
        Some(format!("dropped {dropped} log lines of this plugin (at most {LOG_LINES_PER_CALL} per call)"))
    }
}

/// The types-only interface has nothing to implement.
impl crate::plugin::bindings::wit::Host for HostState {}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps the memory of one store — every linear memory and table its component creates counts
/// toward one budget, so a module with many memories, each under the cap, cannot multiply it —
/// and remembers which cap was hit so the error can say so rather than a bare trap. wasmtime
/// reports a memory's creation as a growth from 0, so the sums cover every one.
pub(crate) struct MemLimiter {
    pub max_bytes: usize,
    pub hit: Option<LimitHit>,
    /// Bytes of all linear memories of the store.
    memory_bytes: usize,
    /// Elements of all tables of the store.
    table_elements: usize,
    /// The growth last granted, taken back if wasmtime then fails it for another reason.
    last_memory_grow: usize,
    last_table_grow: usize,
}

/// Which of a store's caps a plugin ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitHit {
    /// Bytes of linear memory, over all memories.
    Memory,
    /// Elements of all tables together.
    TableElements,
}

/// Elements all tables of one store may hold together (function references: 8–16 bytes each).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Linear memories one store may create: a component gets one (a Rust wasm32-wasip2 component
/// has one), of at most the byte cap. Bytes are summed over memories all the same.
pub(crate) const MAX_MEMORIES: usize = 1;
/// Tables and core instances one store may create.
pub(crate) const MAX_TABLES: usize = 64;
pub(crate) const MAX_INSTANCES: usize = 64;

impl MemLimiter {
    pub fn new(max_bytes: usize) -> MemLimiter {
        MemLimiter { max_bytes, hit: None, memory_bytes: 0, table_elements: 0, last_memory_grow: 0, last_table_grow: 0 }
    }

    /// Bytes of linear memory the store holds now, over all its memories.
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl wasmtime::ResourceLimiter for MemLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        let total = self.memory_bytes.saturating_add(grow);
        if total > self.max_bytes {
            self.hit = Some(LimitHit::Memory);
            wasmtime::bail!(
                "plugin memory would grow to {total} bytes over all its memories, over its limit of {} bytes",
                self.max_bytes
            );
        }
        self.memory_bytes = total;
        self.last_memory_grow = grow;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_bytes -= std::mem::take(&mut self.last_memory_grow).min(self.memory_bytes);
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        let total = self.table_elements.saturating_add(grow);
        if total > MAX_TABLE_ELEMENTS {
            self.hit = Some(LimitHit::TableElements);
            wasmtime::bail!("plugin tables would grow to {total} elements, over the limit of {MAX_TABLE_ELEMENTS}");
        }
        self.table_elements = total;
        self.last_table_grow = grow;
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.table_elements -= std::mem::take(&mut self.last_table_grow).min(self.table_elements);
        Ok(())
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
}

/// A guest's stderr: never fails a write (a chatty plugin must not die of it), keeps the first
/// `HEAD` and the last `TAIL` bytes — a panic message is at the end.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<TailBuf>>);

#[derive(Default)]
struct TailBuf {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
}

const HEAD: usize = 2 * 1024;
const TAIL: usize = 14 * 1024;

impl StderrTail {
    fn push(&self, mut bytes: &[u8]) {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if b.head.len() < HEAD {
            let n = (HEAD - b.head.len()).min(bytes.len());
            b.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.len() >= TAIL {
            b.dropped += (b.tail.len() + bytes.len() - TAIL) as u64;
            b.tail.clear();
            b.tail.extend(&bytes[bytes.len() - TAIL..]);
            return;
        }
        let over = (b.tail.len() + bytes.len()).saturating_sub(TAIL);
        b.dropped += over as u64;
        b.tail.drain(..over);
        b.tail.extend(bytes);
    }

    /// What the guest wrote, lossily decoded; elided middle marked.
    pub fn contents(&self) -> String {
        let b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from_utf8_lossy(&b.head).into_owned();
        if b.dropped > 0 {
            out.push_str(&format!("\n[… {} bytes of stderr elided …]\n", b.dropped));
        }
        let (x, y) = b.tail.as_slices();
        let mut t = x.to_vec();
        t.extend_from_slice(y);
        out.push_str(&String::from_utf8_lossy(&t));
        out
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Module, Store};

    /// A core module defining `n` linear memories of `pages` 64 KiB pages each.
    fn memories(n: u8, pages: u8) -> Vec<u8> {
        let mut body = vec![n];
        for _ in 0..n {
            body.extend([0x00, pages]); // limits: min only
        }
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend([0x05, body.len() as u8]);
        m.extend(body);
        m
    }

    fn instantiate(module: &[u8], cap: usize) -> (wasmtime::Result<()>, MemLimiter) {
        let engine = Engine::default();
        let module = Module::new(&engine, module).expect("valid module");
        let mut store = Store::new(&engine, MemLimiter::new(cap));
        store.limiter(|l| l);
        let r = wasmtime::Instance::new(&mut store, &module, &[]).map(|_| ());
        let limiter = store.into_data();
        (r, limiter)
    }

    #[test]
    fn log_lines_are_rate_limited_per_call_and_per_session() {
        let mut b = LogBudget::default();
        let admitted = (0..LOG_LINES_PER_CALL + 50).filter(|_| b.admit()).count();
        assert_eq!(admitted, LOG_LINES_PER_CALL as usize);
        assert_eq!(b.new_call(), 50, "the drops of the call are reported once");
        assert_eq!(b.new_call(), 0);
        // Over a session: at most LOG_LINES_PER_SESSION in all, however many calls.
        let mut total = LOG_LINES_PER_CALL as u64;
        for _ in 0..100 {
            total += (0..LOG_LINES_PER_CALL).filter(|_| b.admit()).count() as u64;
            b.new_call();
        }
        assert_eq!(total, LOG_LINES_PER_SESSION);
    }

    #[test]
    fn dropped_log_lines_are_reported_without_flooding_the_log() {
        let mut b = LogBudget::default();
        let mut reports = Vec::new();
        for _ in 0..200 {
            for _ in 0..LOG_LINES_PER_CALL + 10 {
                b.admit();
            }
            reports.extend(b.take_report());
            b.new_call();
        }
        let calls_under_limit = (LOG_LINES_PER_SESSION / LOG_LINES_PER_CALL as u64) as usize;
        assert_eq!(reports.len(), calls_under_limit, "{reports:?}");
        assert!(reports[0].starts_with("dropped 10 log lines"), "{}", reports[0]);
        assert!(reports.last().unwrap().contains("its further lines are dropped"), "{reports:?}");
    }

    #[test]
    fn every_memory_counts_toward_one_cap() {
        use wasmtime::ResourceLimiter as _;
        let mib = 1 << 20;
        let mut l = MemLimiter::new(2 * mib);
        // Two memories of 1 MiB each fill a 2 MiB cap; a third is over it, though each alone is
        // far under.
        assert!(l.memory_growing(0, mib, None).unwrap());
        assert!(l.memory_growing(0, mib, None).unwrap());
        assert_eq!(l.memory_bytes(), 2 * mib);
        assert!(l.memory_growing(0, mib, None).is_err());
        assert_eq!(l.hit, Some(LimitHit::Memory));
        // Growth wasmtime then fails for another reason is taken back.
        let mut l = MemLimiter::new(2 * mib);
        assert!(l.memory_growing(0, mib, None).unwrap());
        assert!(l.memory_growing(mib, 2 * mib, None).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("over the memory's own maximum")).unwrap();
        assert_eq!(l.memory_bytes(), mib);
    }

    #[test]
    fn a_component_gets_one_memory_within_the_cap() {
        let (r, l) = instantiate(&memories(1, 16), 2 << 20);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(l.memory_bytes(), 1 << 20, "its creation is counted");
        let (r, l) = instantiate(&memories(1, 48), 2 << 20);
        assert!(r.is_err() && l.hit == Some(LimitHit::Memory), "a 3 MiB memory passed a 2 MiB cap");
        // A second memory is refused, however small.
        let (r, _) = instantiate(&memories(2, 0), 64 << 20);
        assert!(r.is_err(), "two memories were created");
    }
}
