//! Write a SAM Brain plugin in one page.
//!
//! A *source* implements [`Source`] and registers it with [`export_source!`]; a *filter*
//! implements [`Filter`] and registers it with [`export_filter!`]. Build with
//! `cargo build --release --target wasm32-wasip2`; the result is a component the host loads.
//!
//! ```ignore
//! use sam_plugin::source::{Batch, Example};
//!
//! struct Hello { done: bool }
//!
//! impl sam_plugin::Source for Hello {
//!     fn open(_config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
//!         Ok(Hello { done: false })
//!     }
//!     fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
//!         if std::mem::replace(&mut self.done, true) { return Ok(None) }
//!         let ex = sam_plugin::source::chat("greeting", "Say hello", "Hello!", "hello#1");
//!         Ok(Some(Batch { examples: vec![ex], discarded: vec![], checkpoint: None }))
//!     }
//! }
//! sam_plugin::export_source!(Hello);
//! ```

/// Bindings of the `source` world, plus helpers to build examples.
pub mod source {
    wit_bindgen::generate!({
        world: "source",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_source_world",
        default_bindings_module: "sam_plugin::source",
    });

    pub use self::exports::sam::plugin::collector::{Batch, Guest, GuestSession, Session};
    pub use self::sam::plugin::types::{Discard, Example, Kind, Message, Role};
    pub use self::sam::plugin::{git, llm, log, sqlite};

    /// A user turn.
    pub fn user(content: impl Into<String>) -> Message {
        Message { role: Role::User, content: content.into() }
    }

    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message { role: Role::Assistant, content: content.into() }
    }

    /// A one-exchange chat example.
    pub fn chat(task: &str, prompt: impl Into<String>, answer: impl Into<String>, provenance: impl Into<String>) -> Example {
        Example {
            kind: Kind::Chat,
            task: task.to_string(),
            messages: vec![user(prompt), assistant(answer)],
            rejected: None,
            provenance: provenance.into(),
            metadata: String::new(),
        }
    }

    /// Counts discards by reason, in first-seen order, for a batch's `discarded` list.
    #[derive(Default, Debug)]
    pub struct Discards(Vec<Discard>);

    impl Discards {
        pub fn add(&mut self, reason: &str) {
            match self.0.iter_mut().find(|d| d.reason == reason) {
                Some(d) => d.count += 1,
                None => self.0.push(Discard { reason: reason.to_string(), count: 1 }),
            }
        }
        pub fn take(&mut self) -> Vec<Discard> {
            std::mem::take(&mut self.0)
        }
    }

    /// Logs through the host at info level.
    pub fn info(message: &str) {
        log::log(log::Level::Info, message)
    }

    /// Logs through the host at warn level.
    pub fn warn(message: &str) {
        log::log(log::Level::Warn, message)
    }
}

/// Bindings of the `filter` world.
pub mod filter {
    wit_bindgen::generate!({
        world: "filter",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_filter_world",
        default_bindings_module: "sam_plugin::filter",
    });

    pub use self::exports::sam::plugin::judge::{Filter as FilterResource, Guest, GuestFilter};
    pub use self::sam::plugin::log;
    pub use self::sam::plugin::types::{Example, Kind, Message, Role, Verdict};
}

/// A source plugin: opened with its config and last checkpoint, then pulled until done.
pub trait Source: Sized + 'static {
    /// `config` is the plugin's TOML table (`config = { … }` in brain.toml) as JSON.
    fn open(config: serde_json::Value, checkpoint: Option<String>) -> Result<Self, String>;
    /// At most `max` examples, or `None` when done.
    fn next(&mut self, max: u32) -> Result<Option<source::Batch>, String>;
    /// Remaining work, for progress bars.
    fn estimate(&self) -> Option<u64> {
        None
    }
}

/// A filter plugin: a pure function from an example to a verdict.
pub trait Filter: Sized + 'static {
    fn open(config: serde_json::Value) -> Result<Self, String>;
    fn evaluate(&self, example: &filter::Example) -> filter::Verdict;
}

/// Parses a config string handed over by the host (empty means `{}`).
pub fn parse_config(config: &str) -> Result<serde_json::Value, String> {
    if config.trim().is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))
}

/// Exports a type implementing [`Source`] as this component's `collector`.
#[macro_export]
macro_rules! export_source {
    ($ty:ty) => {
        struct __SamSourceSession(::std::cell::RefCell<$ty>);
        struct __SamSourceGuest;
        impl $crate::source::GuestSession for __SamSourceSession {
            fn open(config: String, checkpoint: Option<String>) -> Result<$crate::source::Session, String> {
                let config = $crate::parse_config(&config)?;
                let inner = <$ty as $crate::Source>::open(config, checkpoint)?;
                Ok($crate::source::Session::new(__SamSourceSession(::std::cell::RefCell::new(inner))))
            }
            fn next(&self, max: u32) -> Result<Option<$crate::source::Batch>, String> {
                <$ty as $crate::Source>::next(&mut self.0.borrow_mut(), max)
            }
            fn estimate(&self) -> Option<u64> {
                <$ty as $crate::Source>::estimate(&self.0.borrow())
            }
        }
        impl $crate::source::Guest for __SamSourceGuest {
            type Session = __SamSourceSession;
        }
        $crate::source::__export_source_world!(__SamSourceGuest);
    };
}

/// Exports a type implementing [`Filter`] as this component's `judge`.
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        struct __SamFilterResource($ty);
        struct __SamFilterGuest;
        impl $crate::filter::GuestFilter for __SamFilterResource {
            fn open(config: String) -> Result<$crate::filter::FilterResource, String> {
                let config = $crate::parse_config(&config)?;
                let inner = <$ty as $crate::Filter>::open(config)?;
                Ok($crate::filter::FilterResource::new(__SamFilterResource(inner)))
            }
            fn evaluate(&self, examples: Vec<$crate::filter::Example>) -> Result<Vec<$crate::filter::Verdict>, String> {
                Ok(examples.iter().map(|e| <$ty as $crate::Filter>::evaluate(&self.0, e)).collect())
            }
        }
        impl $crate::filter::Guest for __SamFilterGuest {
            type Filter = __SamFilterResource;
        }
        $crate::filter::__export_filter_world!(__SamFilterGuest);
    };
}
