//! The run registry and model versions.
//!
//! Every train, DPO and eval run is recorded in the store ([`runs`]): its config, dataset snapshot,
//! base model (path + [`fingerprint`]), adapter, per-step metrics, final metrics, status
//! (running / done / failed / interrupted), duration, host, process and MLX device. A run whose
//! process died is found by [`runs::reap_stale`] and marked interrupted, so it can be resumed.
//! [`plot`] draws its loss curves as a PNG (no system fonts needed), [`spark`] as a terminal
//! sparkline.
//!
//! Trained adapters become model versions ([`models`]): candidate → active → retired, with
//! promotion by hand, automatic promotion when a candidate beats the active version on a
//! configured metric by a margin (else it stays candidate with the reason recorded), and
//! rollback to the version the active one replaced.
//!
//! What a command that trains does:
//!
//! ```no_run
//! # fn demo(store: &brain::store::Store, progress: &brain_train::Progress) -> anyhow::Result<()> {
//! use brain::registry::runs::{Run, RunSpec};
//! let run = Run::start(store, RunSpec { kind: "sft".into(), ..RunSpec::default() })?;
//! run.log_progress(progress)?;                      // from the trainer's progress callback
//! run.done(serde_json::json!({"val_loss": 1.23}))?; // or run.fail(&error) / run.interrupted(..)
//! # Ok(()) }
//! ```

pub mod fingerprint;
pub mod models;
pub mod plot;
pub mod runs;
pub mod spark;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no run {0} (`brain runs` lists them)")]
    NoRun(String),
    #[error("{prefix:?} matches several runs ({}): give more of the id", ids.join(", "))]
    AmbiguousRun { prefix: String, ids: Vec<String> },
    #[error("run {id} is {status}; only an interrupted or failed run can be resumed")]
    NotResumable { id: String, status: String },
    #[error("no dataset snapshot {0} in the store (`brain export` records them)")]
    NoSnapshot(String),
    #[error("no model version {0} (`brain models` lists them)")]
    NoModel(String),
    #[error("no active model version: nothing to roll back")]
    NoActive,
    #[error("{0} is active but replaced no earlier version: nothing to roll back to")]
    NoPrevious(String),
    #[error("cannot restore {version}: its adapter {path} is gone")]
    MissingAdapter { version: String, path: String },
    #[error("[eval] promote_metric = {metric:?}: {message}")]
    Policy { metric: String, message: String },
    #[error("the run registry needs a store file; {0} is in memory")]
    InMemory(String),
    #[error("cannot read the base model {path}: {source}")]
    Fingerprint { path: String, source: std::io::Error },
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
