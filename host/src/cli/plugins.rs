//! `brain plugins list` and `brain plugins info NAME`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::json;

use super::Ctx;
use crate::config::{Config, PluginEntry};
use crate::plugin::{PluginHost, PluginInfo, PluginRef};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The bundled plugins and those the config loads from files.
    List,
    /// What a plugin is (world, version, the capabilities it imports) and who uses it.
    Info {
        /// A bundled plugin's name, a configured source or filter name, or a path to a .wasm.
        name: String,
    },
}

pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<ExitCode> {
    // The config is optional here: without one, the bundled plugins are still worth listing.
    let config = if ctx.config_path.exists() { Some(ctx.config()?) } else { None };
    let host = match &config {
        Some(c) => ctx.plugin_host(c)?,
        None => {
            let c = Config::from_str("", &std::path::absolute(&ctx.config_path)?)?;
            ctx.plugin_host(&c)?
        }
    };
    match cmd {
        Command::List => list(ctx, &host, config.as_ref()),
        Command::Info { name } => info(ctx, &host, config.as_ref(), &name),
    }
}

/// The config entries (sources and filters) that load `plugin`.
fn users<'a>(config: Option<&'a Config>, plugin: &PluginRef) -> Vec<(&'static str, &'a PluginEntry)> {
    let Some(c) = config else { return Vec::new() };
    let same = |e: &PluginEntry| match (&e.plugin, plugin) {
        (PluginRef::Bundled(a), PluginRef::Bundled(b)) => a == b,
        (PluginRef::Path(a), PluginRef::Path(b)) => a == b,
        _ => false,
    };
    let sources = c.sources.iter().filter(|e| same(e)).map(|e| ("source", e));
    let filters = c.filters.iter().filter(|e| same(e)).map(|e| ("filter", e));
    sources.chain(filters).collect()
}

fn world(info: &PluginInfo) -> String {
    format!("{:?}", info.world).to_lowercase()
}

fn list(ctx: &Ctx, host: &PluginHost, config: Option<&Config>) -> anyhow::Result<ExitCode> {
    let mut refs: Vec<PluginRef> = PluginHost::bundled_names().into_iter().map(|n| PluginRef::Bundled(n.to_string())).collect();
    if let Some(c) = config {
        for e in c.sources.iter().chain(&c.filters) {
            if let PluginRef::Path(p) = &e.plugin {
                if !refs.iter().any(|r| matches!(r, PluginRef::Path(q) if q == p)) {
                    refs.push(e.plugin.clone());
                }
            }
        }
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for r in &refs {
        let used_by: Vec<String> = users(config, r).iter().map(|(_, e)| e.name.clone()).collect();
        match host.info(r) {
            Ok(info) => rows.push(json!({
                "name": info.name, "world": world(&info), "version": info.version,
                "imports": info.imports, "bundled": info.bundled, "size_bytes": info.size_bytes,
                "path": path_of(r), "used_by": used_by,
            })),
            Err(e) => {
                failed = true;
                rows.push(json!({ "name": label(r), "path": path_of(r), "used_by": used_by, "error": e.to_string() }));
            }
        }
    }
    if ctx.json {
        super::print_json(&rows)?;
    } else {
        println!("{:<14} {:<7} {:<8} {:>9}  {:<22} used by", "plugin", "world", "version", "size", "imports");
        for r in &rows {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let used = r["used_by"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", "));
            if let Some(err) = r.get("error") {
                println!("{:<14} error: {}", s("name"), err.as_str().unwrap_or_default());
                continue;
            }
            let imports = r["imports"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(","));
            println!(
                "{:<14} {:<7} {:<8} {:>9}  {:<22} {}",
                s("name"),
                s("world"),
                s("version"),
                super::status::human_bytes(r["size_bytes"].as_u64().unwrap_or(0)),
                imports.unwrap_or_default(),
                used.unwrap_or_default()
            );
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn label(r: &PluginRef) -> String {
    match r {
        PluginRef::Bundled(n) => n.clone(),
        PluginRef::Path(p) => p.file_stem().map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into_owned()),
    }
}

fn path_of(r: &PluginRef) -> Option<PathBuf> {
    match r {
        PluginRef::Path(p) => Some(p.clone()),
        PluginRef::Bundled(_) => None,
    }
}

/// NAME → the plugin it means: a configured entry's plugin, a bundled plugin, or a file.
fn resolve(config: Option<&Config>, name: &str) -> anyhow::Result<PluginRef> {
    if let Some(e) = config.and_then(|c| c.sources.iter().chain(&c.filters).find(|e| e.name == name)) {
        return Ok(e.plugin.clone());
    }
    if PluginHost::bundled_names().contains(&name) {
        return Ok(PluginRef::Bundled(name.to_string()));
    }
    let path = PathBuf::from(name);
    if path.is_file() {
        return Ok(PluginRef::Path(std::path::absolute(path)?));
    }
    bail!(
        "no plugin {name:?}: not a configured source or filter, not a bundled plugin ({}), not a file",
        PluginHost::bundled_names().join(", ")
    )
}

fn info(ctx: &Ctx, host: &PluginHost, config: Option<&Config>, name: &str) -> anyhow::Result<ExitCode> {
    let r = resolve(config, name)?;
    let info = host.info(&r)?;
    let users = users(config, &r);
    // Capabilities the plugin imports but a configured user did not grant.
    let missing = |e: &PluginEntry| -> Vec<&str> {
        let g = &e.grants;
        [("git", g.git.is_empty()), ("sqlite", g.sqlite.is_empty()), ("llm", g.llm.endpoints.is_empty())]
            .into_iter()
            .filter(|(cap, empty)| *empty && info.imports.iter().any(|i| i.contains(&format!("/{cap}"))))
            .map(|(cap, _)| cap)
            .collect()
    };
    if ctx.json {
        let used: Vec<_> = users
            .iter()
            .map(|(what, e)| {
                json!({ "kind": what, "name": e.name, "at": e.at.to_string(),
                        "grants": { "git": e.grants.git, "sqlite": e.grants.sqlite, "read": e.grants.read, "llm": e.grants.llm.endpoints },
                        "ungranted_imports": missing(e) })
            })
            .collect();
        super::print_json(&json!({
            "name": info.name, "world": world(&info), "version": info.version, "imports": info.imports,
            "bundled": info.bundled, "size_bytes": info.size_bytes, "path": path_of(&r), "used_by": used,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("name     {}", info.name);
    println!("world    {}", world(&info));
    println!("version  {}", info.version);
    match path_of(&r) {
        Some(p) => println!("file     {} ({})", p.display(), super::status::human_bytes(info.size_bytes as u64)),
        None => println!("bundled  yes ({})", super::status::human_bytes(info.size_bytes as u64)),
    }
    println!("imports  {}", if info.imports.is_empty() { "none".to_string() } else { info.imports.join(", ") });
    for (what, e) in &users {
        let g = &e.grants;
        println!("used by  {what} {:?} ({}) grants git {:?} sqlite {:?} read {:?}", e.name, e.at, g.git, g.sqlite, g.read);
        if !g.llm.endpoints.is_empty() {
            println!("         llm {:?}", g.llm.endpoints);
        }
        let m = missing(e);
        if !m.is_empty() {
            println!("         warning: imports {} but is granted none; add grants.{} in [[{what}]]", m.join(", "), m[0]);
        }
    }
    Ok(ExitCode::SUCCESS)
}
