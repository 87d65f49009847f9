//! Host bindings of the two plugin worlds, generated from `plugin-api/wit`.
//!
//! Both worlds share the `types` and `log` interfaces: the filter world reuses the source world's
//! generated modules through `with:`, so one `HostState` implements each interface once.
//!
//! Two interface versions are linked: the current `sam:plugin@0.2.0` and `0.1.0` (whose text is
//! kept in `plugin-api/wit-0.1.0`). 0.2.0 only added the `llm` import, so the 0.1.0 bindings
//! reuse every 0.2.0 type and host trait through `with:`; only their export wrappers (the
//! `collector` and `judge` call stubs, which look exports up by versioned name) are generated
//! anew. The 0.1.0 import instances are registered by [`add_v01_imports`] under their own names
//! with the same host functions.
//!
//! Exports are `async`: each call into a plugin is a future the runtime drives under a wall-clock
//! timeout, so a plugin blocked in an async host call (WASI poll, i.e. `sleep`) is dropped at its
//! deadline. The host's own imports stay synchronous and bound themselves (see `capability`).

use wasmtime::component::{HasSelf, Linker};

use super::state::HostState;

pub mod source {
    wasmtime::component::bindgen!({
        world: "source",
        path: "../plugin-api/wit",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "sam:plugin/git.repository": crate::capability::git::GitRepo,
            "sam:plugin/git.commit-walk": crate::capability::git::GitWalk,
            "sam:plugin/sqlite.connection": crate::capability::sqlite::SqlConn,
        },
    });
}

pub mod filter {
    wasmtime::component::bindgen!({
        world: "filter",
        path: "../plugin-api/wit",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "sam:plugin/types": super::source::sam::plugin::types,
            "sam:plugin/log": super::source::sam::plugin::log,
        },
    });
}

/// The `source` world of `sam:plugin@0.1.0` (no `llm`).
pub mod source_v01 {
    wasmtime::component::bindgen!({
        world: "source",
        path: "../plugin-api/wit-0.1.0",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "sam:plugin/types": super::source::sam::plugin::types,
            "sam:plugin/log": super::source::sam::plugin::log,
            "sam:plugin/git": super::source::sam::plugin::git,
            "sam:plugin/sqlite": super::source::sam::plugin::sqlite,
        },
    });
}

/// The `filter` world of `sam:plugin@0.1.0`.
pub mod filter_v01 {
    wasmtime::component::bindgen!({
        world: "filter",
        path: "../plugin-api/wit-0.1.0",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "sam:plugin/types": super::source::sam::plugin::types,
            "sam:plugin/log": super::source::sam::plugin::log,
        },
    });
}

pub use source::sam::plugin::types as wit;

/// Registers the imports of `sam:plugin@0.1.0` (`types`, `log`, and for sources `git` and
/// `sqlite`) in `linker`, implemented by the same host functions as 0.2.0's: the interfaces are
/// identical, only the instance names differ.
pub(super) fn add_v01_imports(linker: &mut Linker<HostState>, source: bool) -> wasmtime::Result<()> {
    use source::sam::plugin as p;
    p::types::add_to_linker_instance::<HostState, HasSelf<HostState>>(&mut linker.instance("sam:plugin/types@0.1.0")?, |s| s)?;
    p::log::add_to_linker_instance::<HostState, HasSelf<HostState>>(&mut linker.instance("sam:plugin/log@0.1.0")?, |s| s)?;
    if source {
        p::git::add_to_linker_instance::<HostState, HasSelf<HostState>>(&mut linker.instance("sam:plugin/git@0.1.0")?, |s| s)?;
        p::sqlite::add_to_linker_instance::<HostState, HasSelf<HostState>>(&mut linker.instance("sam:plugin/sqlite@0.1.0")?, |s| s)?;
    }
    Ok(())
}
