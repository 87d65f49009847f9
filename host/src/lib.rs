//! The `brain` library: everything the CLI does, as functions tests can call.
//!
//! The modules follow the data's path: plugins (`plugin`, `capability`) produce examples,
//! `collect` scrubs, filters, deduplicates and stores them (`store`), and the CLI (`cli`) drives
//! it all from one config file (`config`). The native core's runs (`training`) are recorded in
//! the `registry`; `pipeline` strings every stage together and `demo` runs it on embedded defaults.

pub mod capability;
pub mod cli;
pub mod collect;
pub mod config;
pub mod curation;
pub mod demo;
pub mod example;
pub mod export;
pub mod llm;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod review;
pub mod serve;
pub mod ship;
pub mod store;
pub mod training;
