//! Which world and interface version a component was built for, read from its imports and
//! exports before it is linked: `sam:plugin@0.1.x` and `0.2.x` are linked (see `bindings`), other
//! versions are refused with a message saying what to do.

use wasmtime::component::Component;
use wasmtime::Engine;

use super::{load_err, PluginError, PluginRef, World, WIT_OLDEST_MINOR, WIT_PACKAGE, WIT_VERSION};

/// Finds the world (by export), the `sam:plugin` version (refusing incompatible ones) and the
/// imports of a component.
pub(super) fn inspect(
    name: &str,
    plugin: &PluginRef,
    engine: &Engine,
    component: &Component,
) -> Result<(World, String, Vec<String>), PluginError> {
    let ty = component.component_type();
    let mut world = None;
    let mut version: Option<String> = None;
    let mut check = |full: &str| -> Result<(), PluginError> {
        let Some(rest) = full.strip_prefix("sam:plugin/") else { return Ok(()) };
        let Some((iface, ver)) = rest.split_once('@') else {
            return Err(load_err(name, format!("`{plugin}` uses `{full}` without a version; rebuild it against the sam-plugin crate")));
        };
        let mut parts = ver.split('.').map(|p| p.parse::<u64>().ok());
        let (major, minor) = (parts.next().flatten(), parts.next().flatten());
        let known = major == Some(WIT_VERSION.0) && minor.is_some_and(|m| (WIT_OLDEST_MINOR..=WIT_VERSION.1).contains(&m));
        if !known {
            let (x, oldest, newest) = (WIT_VERSION.0, WIT_OLDEST_MINOR, WIT_VERSION.1);
            return Err(load_err(
                name,
                format!(
                    "`{plugin}` was built for {WIT_PACKAGE}@{ver}, but this brain runs {WIT_PACKAGE}@{x}.{oldest}.x to {x}.{newest}.x plugins; rebuild it against a matching sam-plugin crate or upgrade brain"
                ),
            ));
        }
        let _ = iface;
        // One component, one version: mixing them would link half of it to the wrong one.
        match &version {
            Some(v) if v.rsplit_once('.').map(|p| p.0) != ver.rsplit_once('.').map(|p| p.0) => {
                return Err(load_err(name, format!("`{plugin}` mixes {WIT_PACKAGE}@{v} and @{ver}; build it against one version")));
            }
            _ => {}
        }
        version.get_or_insert_with(|| ver.to_string());
        Ok(())
    };
    for (export, _) in ty.exports(engine) {
        check(export)?;
        let iface = export.strip_prefix("sam:plugin/").map(|r| r.split('@').next().unwrap_or(r));
        match iface {
            Some("collector") => world = Some(World::Source),
            Some("judge") => world = Some(World::Filter),
            _ => {}
        }
    }
    let mut imports = Vec::new();
    for (import, _) in ty.imports(engine) {
        check(import)?;
        imports.push(import.to_string());
    }
    let Some(world) = world else {
        return Err(load_err(
            name,
            format!("`{plugin}` is a component but not a SAM plugin: it exports neither `{WIT_PACKAGE}/collector` (source) nor `{WIT_PACKAGE}/judge` (filter)"),
        ));
    };
    Ok((world, version.unwrap_or_default(), imports))
}
