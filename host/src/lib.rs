//! The `brain` library: everything the CLI does, as functions tests can call.
//!
//! The modules follow the data's path: plugins (`plugin`, `capability`) produce examples,
//! `collect` scrubs, filters, deduplicates and stores them (`store`), and the CLI (`cli`) drives
//! it all from one config file (`config`).

pub mod capability;
pub mod cli;
pub mod collect;
pub mod config;
pub mod example;
pub mod plugin;
pub mod store;
