//! Pages of a walk: the commits to visit were listed up front (cheap: ids only); they are read
//! and diffed in runs of commits, on more than one thread when the machine has the cores.
//!
//! - **Split**: a run is cut into contiguous pieces, one per [`Reader`] (all cores but one;
//!   the other is the collect's store thread). Each piece a reader starts anew decodes its
//!   delta chains again, so splitting costs CPU (~25% on bench/collect.sh's repository) and
//!   only pays with cores to spare.
//! - **Ahead**: one thread reads the runs, in order, while the plugin turns the previous page
//!   into examples and the store thread stores them; the plugin's `next` takes what is ready.
//!   Nothing is read twice, and with 2 cores the git reading, the plugin and the store share
//!   both instead of the reading and the plugin sharing one.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver};

use gix::ObjectId;

use super::{Reader, MAX_PAGE};
use crate::plugin::bindings::source::sam::plugin::git::Commit;

/// Most reader threads one walk uses.
pub(super) const MAX_THREADS: usize = 8;
/// Below this many commits per reader a run is read by one reader.
const MIN_PER_THREAD: usize = 32;
/// Commits per run read ahead, and runs waiting (bounds the memory a walk holds).
const AHEAD_RUN: usize = 256;
const AHEAD_QUEUE: usize = 2;
/// Commits read here between two looks at the call deadline.
const RUN_UNDER_DEADLINE: usize = AHEAD_RUN;

/// An ongoing walk (the host side of the WIT `commit-walk` resource).
pub struct GitWalk {
    total: usize,
    taken: usize,
    source: Source,
    /// Commits read but not handed out yet (a run is not cut to the plugin's page size).
    ready: VecDeque<Commit>,
    /// The error that ended the reading ahead, repeated to every later call.
    failed: Option<String>,
}

enum Source {
    Here(Runs),
    /// Runs read on another thread; it stops when this end is dropped.
    Ahead(Receiver<Result<Vec<Commit>, String>>),
}

/// The ids still to read and the readers that read them.
struct Runs {
    ids: Vec<ObjectId>,
    pos: usize,
    readers: Vec<Reader>,
}

impl GitWalk {
    pub(super) fn new(ids: Vec<ObjectId>, readers: Vec<Reader>, ahead: bool) -> GitWalk {
        let total = ids.len();
        let mut runs = Runs { ids, pos: 0, readers };
        let source = if ahead && total > 0 {
            let (tx, rx) = sync_channel(AHEAD_QUEUE);
            let spawned = std::thread::Builder::new().name("brain-git-reader".into()).spawn(move || {
                while runs.pos < runs.ids.len() {
                    let run = runs.next_run(AHEAD_RUN);
                    let failed = run.is_err();
                    if tx.send(run).is_err() || failed {
                        return; // the walk was dropped, or it ends with this error
                    }
                }
            });
            match spawned {
                Ok(_) => Source::Ahead(rx),
                // No thread to be had: the error names it on the first page.
                Err(e) => {
                    let (tx, rx) = sync_channel(1);
                    let _ = tx.send(Err(format!("cannot start the git reader thread: {e}")));
                    Source::Ahead(rx)
                }
            }
        } else {
            Source::Here(runs)
        };
        GitWalk { total, taken: 0, source, ready: VecDeque::new(), failed: None }
    }

    /// Commits still to visit.
    pub fn remaining(&self) -> usize {
        self.total - self.taken
    }

    /// The next page of at most `max` commits (empty when done).
    pub fn next_page(&mut self, max: u32) -> Result<Vec<Commit>, String> {
        self.next_page_until(max, None)
    }

    /// [`GitWalk::next_page`] that gives up once `deadline` has passed (checked between runs of
    /// commits, and while waiting for the read-ahead thread).
    pub fn next_page_until(&mut self, max: u32, deadline: Option<std::time::Instant>) -> Result<Vec<Commit>, String> {
        let n = (max.clamp(1, MAX_PAGE) as usize).min(self.remaining());
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let past = || super::PAST_DEADLINE.to_string();
        while self.ready.len() < n {
            if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return Err(past());
            }
            let run = match &mut self.source {
                Source::Here(runs) => runs.next_run((n - self.ready.len()).min(RUN_UNDER_DEADLINE))?,
                Source::Ahead(rx) => {
                    let got = match deadline {
                        Some(d) => rx.recv_timeout(d.saturating_duration_since(std::time::Instant::now())).map_err(|e| match e {
                            std::sync::mpsc::RecvTimeoutError::Timeout => None,
                            std::sync::mpsc::RecvTimeoutError::Disconnected => Some(()),
                        }),
                        None => rx.recv().map_err(|_| Some(())),
                    };
                    match got {
                        Ok(Ok(run)) => run,
                        Ok(Err(e)) => {
                            self.failed = Some(e.clone());
                            return Err(e);
                        }
                        Err(None) => return Err(past()),
                        Err(Some(())) => return Err("the git reader thread stopped (a bug: please report it)".into()),
                    }
                }
            };
            self.ready.extend(run);
        }
        self.taken += n;
        Ok(self.ready.drain(..n).collect())
    }
}

impl Runs {
    /// Reads the next `max` commits (fewer at the end), split between readers when it is long
    /// enough.
    fn next_run(&mut self, max: usize) -> Result<Vec<Commit>, String> {
        let n = max.min(self.ids.len() - self.pos);
        let ids = &self.ids[self.pos..self.pos + n];
        self.pos += n;
        let threads = (n / MIN_PER_THREAD).clamp(1, self.readers.len());
        if threads == 1 {
            return ids.iter().map(|id| self.readers[0].read_commit(*id)).collect();
        }
        // Contiguous pieces, one per reader; this thread reads the first.
        let per = n.div_ceil(threads);
        let (first, rest) = self.readers.split_first_mut().expect("at least one reader");
        let mut pieces = ids.chunks(per);
        let head = pieces.next().unwrap_or_default();
        let read: Vec<Result<Vec<Commit>, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = pieces
                .zip(rest.iter_mut())
                .map(|(piece, reader)| scope.spawn(move || piece.iter().map(|id| reader.read_commit(*id)).collect()))
                .collect();
            let mut read = vec![head.iter().map(|id| first.read_commit(*id)).collect()];
            for h in handles {
                read.push(h.join().unwrap_or_else(|_| Err("a git reader thread panicked (a bug: please report it)".into())));
            }
            read
        });
        let mut out = Vec::with_capacity(n);
        for piece in read {
            out.extend(piece?);
        }
        Ok(out)
    }
}
