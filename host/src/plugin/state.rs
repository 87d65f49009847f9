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

use crate::capability::Capabilities;

pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemLimiter,
    pub stderr: StderrTail,
    pub caps: Capabilities,
}

/// The types-only interface has nothing to implement.
impl crate::plugin::bindings::wit::Host for HostState {}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory (and tables) of one store; remembers that the cap was hit so the error
/// can say "out of memory" rather than a bare trap.
pub(crate) struct MemLimiter {
    pub max_bytes: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            wasmtime::bail!("plugin memory would grow to {desired} bytes, over its limit of {} bytes", self.max_bytes);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > 1_000_000 {
            self.hit = true;
            wasmtime::bail!("plugin table would grow to {desired} elements, over its limit");
        }
        Ok(true)
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
