//! Host capabilities a plugin may import, each denied unless the config grants it.
//!
//! - `log`: always granted; lines go to `tracing` with the plugin's configured name.
//! - `git`: read-only history of repositories under granted directories, read natively with gix
//!   ([`git`]).
//! - `sqlite`: read-only queries on granted database files ([`sqlite`]).
//! - `llm`: chat requests to granted model endpoints, made by the host under the call's deadline
//!   and the source's call and token budget ([`llm`]; `sam:plugin@0.2.0` sources only).
//!
//! WASI filesystem access (granted `read` directories, preopened read-only) is set up by the
//! plugin runtime, not here.

pub mod git;
pub mod llm;
pub mod sqlite;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::plugin::bindings::source::sam::plugin::log::{self, Level};
use crate::plugin::state::HostState;

/// A refused capability request, remembered so the runtime can report
/// [`PluginError::Denied`](crate::plugin::PluginError::Denied) instead of the plugin's own wording.
#[derive(Clone, Debug)]
pub struct Denial {
    pub capability: &'static str,
    pub path: String,
}

/// The grants of one plugin instance, canonicalized once, plus what the capabilities need at
/// call time.
pub struct Capabilities {
    pub plugin: Arc<str>,
    git_roots: Vec<PathBuf>,
    sqlite_roots: Vec<PathBuf>,
    /// The last refused request during the current call.
    pub denial: Option<Denial>,
    /// When the current guest call must end (bounds SQLite queries, which wasm epochs can't).
    pub deadline: Option<Instant>,
    /// Git repositories, walks and SQLite connections open now.
    pub handles: Handles,
    /// The granted model endpoints, with the source's llm budget and meter.
    pub llm: llm::LlmGrant,
}

/// A kind of host handle a plugin holds open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    GitRepo,
    GitWalk,
    Sqlite,
}

impl Handle {
    /// How many of this kind one plugin instance may hold open at once: each holds files,
    /// caches and (walks) reader threads. Repositories are many because the bundled git plugin
    /// keeps every configured repository open for the whole collect.
    pub const fn limit(self) -> usize {
        match self {
            Handle::GitRepo => 256,
            Handle::GitWalk => 4,
            Handle::Sqlite => 8,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Handle::GitRepo => "git repositories",
            Handle::GitWalk => "git walks",
            Handle::Sqlite => "SQLite connections",
        }
    }
}

/// Counts of the handles a plugin instance holds open, each kind bounded by [`Handle::limit`].
#[derive(Debug, Default)]
pub struct Handles {
    open: [usize; 3],
}

impl Handles {
    /// Takes one more handle of `kind`, or says why not (the guest gets the message).
    pub fn open(&mut self, kind: Handle) -> Result<(), String> {
        let n = &mut self.open[kind as usize];
        if *n >= kind.limit() {
            return Err(format!("too many open {}: at most {} at once; drop one first", kind.what(), kind.limit()));
        }
        *n += 1;
        Ok(())
    }

    pub fn close(&mut self, kind: Handle) {
        let n = &mut self.open[kind as usize];
        *n = n.saturating_sub(1);
    }

    pub fn count(&self, kind: Handle) -> usize {
        self.open[kind as usize]
    }
}

/// Turns a host call's failure after the plugin's deadline into a trap: the runtime reports it
/// as a timeout and drops the plugin, rather than the guest going on past its deadline.
pub(crate) fn deadline_trap<T>(deadline: Option<Instant>, result: Result<T, String>) -> wasmtime::Result<Result<T, String>> {
    match result {
        Err(_) if deadline.is_some_and(|d| Instant::now() > d) => Err(wasmtime::Trap::Interrupt.into()),
        other => Ok(other),
    }
}

impl Capabilities {
    /// `git`/`sqlite` are the granted paths as configured; ones that do not exist are kept
    /// lexically (they can never match an existing path, so they deny nothing extra).
    /// No `llm` grant: set [`Capabilities::llm`] for one.
    pub fn new(plugin: Arc<str>, git: &[PathBuf], sqlite: &[PathBuf]) -> Self {
        Capabilities {
            plugin,
            git_roots: git.iter().map(|p| canonical_or_lexical(p)).collect(),
            sqlite_roots: sqlite.iter().map(|p| canonical_or_lexical(p)).collect(),
            denial: None,
            deadline: None,
            handles: Handles::default(),
            llm: llm::LlmGrant::default(),
        }
    }

    /// Whether `real` (a canonical path) lies under a root granted for `capability`.
    pub fn is_granted(&self, capability: &str, real: &Path) -> bool {
        let roots = match capability {
            "git" => &self.git_roots,
            _ => &self.sqlite_roots,
        };
        roots.iter().any(|r| real.starts_with(r))
    }

    /// Resolves `requested` and checks it lies under one of the roots granted for `capability`.
    /// A refusal is remembered in `self.denial` and returned as a message for the guest.
    pub fn check(&mut self, capability: &'static str, requested: &str) -> Result<PathBuf, String> {
        let roots = match capability {
            "git" => &self.git_roots,
            _ => &self.sqlite_roots,
        };
        // `~/…` in a plugin's own config (the host expands it; plugins see no environment).
        let expanded;
        let path = match requested.strip_prefix("~/") {
            Some(rest) => match std::env::var_os("HOME") {
                Some(home) => {
                    expanded = PathBuf::from(home).join(rest);
                    expanded.as_path()
                }
                None => Path::new(requested),
            },
            None => Path::new(requested),
        };
        let deny = |this: &mut Self, why: &str| {
            this.denial = Some(Denial { capability, path: requested.to_string() });
            Err(format!(
                "access to `{requested}` denied: {why}; grant it in brain.toml with \
                 `grants = {{ {capability} = [\"...\"] }}`"
            ))
        };
        if roots.is_empty() {
            return deny(self, &format!("this plugin has no `{capability}` grant"));
        }
        if !path.is_absolute() {
            return deny(self, "the path is not absolute");
        }
        match std::fs::canonicalize(path) {
            Ok(real) => {
                if roots.iter().any(|r| real.starts_with(r)) {
                    Ok(real)
                } else {
                    deny(self, "it is outside every granted path")
                }
            }
            Err(e) => {
                // Say "not found" only inside a grant, so a plugin cannot probe the disk.
                let lexical = lexical_normalize(path);
                if roots.iter().any(|r| lexical.starts_with(r)) {
                    Err(format!("cannot open `{requested}`: {e}"))
                } else {
                    deny(self, "it is outside every granted path")
                }
            }
        }
    }
}

fn canonical_or_lexical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| lexical_normalize(p))
}

/// Removes `.` and resolves `..` without touching the disk.
fn lexical_normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Longest log line kept from a plugin.
const MAX_LOG_LINE: usize = 8 * 1024;

impl log::Host for HostState {
    /// Lines are rate limited (see [`LogBudget`](crate::plugin::state::LogBudget)), cut to
    /// [`MAX_LOG_LINE`], stripped of terminal controls and scrubbed of secrets before they reach
    /// `tracing` (the terminal, a log file).
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if !self.log.admit() {
            return Ok(());
        }
        let plugin = &*self.caps.plugin;
        let message = self.text.clean(truncate_str(&message, MAX_LOG_LINE));
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

/// `s` cut to at most `max` bytes on a char boundary.
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
