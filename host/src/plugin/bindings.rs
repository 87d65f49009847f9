//! Host bindings of the two plugin worlds, generated from `plugin-api/wit`.
//!
//! Both worlds share the `types` and `log` interfaces: the filter world reuses the source world's
//! generated modules through `with:`, so one `HostState` implements each interface once.

pub mod source {
    wasmtime::component::bindgen!({
        world: "source",
        path: "../plugin-api/wit",
        imports: { default: trappable },
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
        with: {
            "sam:plugin/types": super::source::sam::plugin::types,
            "sam:plugin/log": super::source::sam::plugin::log,
        },
    });
}

pub use source::sam::plugin::types as wit;
