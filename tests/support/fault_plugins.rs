//! Builds tests/fault-plugins (misbehaving plugins, one crate per fault) for wasm32-wasip2, once
//! per test process, into a target dir under CARGO_TARGET_TMPDIR. Include it from a test with
//! `#[path = "support/fault_plugins.rs"] mod fault_plugins;` and call `fault_plugins::wasm("trap")`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding `<name>.wasm` for every fault plugin (names with `_` for `-`).
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build)
}

/// Path of one fault plugin's component, e.g. `wasm("read-outside")`.
pub fn wasm(name: &str) -> PathBuf {
    let p = dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(p.is_file(), "fault plugin {name} was not built: {}", p.display());
    p
}

fn build() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf();
    let manifest = root.join("tests/fault-plugins/Cargo.toml");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags and settings must not leak into the wasm build.
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_TARGET_")
            || k.starts_with("CARGO_ENCODED_")
            || k == "CARGO_MAKEFLAGS"
            || k == "RUSTC_WORKSPACE_WRAPPER"
            || k == "RUSTDOCFLAGS"
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUSTFLAGS", "");
    let out = cmd.output().expect("running cargo to build tests/fault-plugins");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("can't find crate for `std`") || stderr.contains("target may not be installed") {
            "\nInstall the wasm target: rustup target add wasm32-wasip2"
        } else {
            ""
        };
        panic!("building tests/fault-plugins failed:\n{stderr}{hint}");
    }
    target_dir.join("wasm32-wasip2/release")
}
