//! Host bindings of the two plugin worlds, generated from `plugin-api/wit`.
//!
//! Both worlds share the `types` and `log` interfaces: the filter world reuses the source world's
//! generated modules through `with:`, so one `HostState` implements each interface once.
//!
//! Exports are `async`: each call into a plugin is a future the runtime drives under a wall-clock
//! timeout, so a plugin blocked in an async host call (WASI poll, i.e. `sleep`) is dropped at its
//! deadline. The host's own imports stay synchronous and bound themselves (see `capability`).

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

pub use source::sam::plugin::types as wit;
