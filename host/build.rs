//! Builds the bundled plugins (the `plugins/` cargo workspace) for wasm32-wasip2 and embeds them.
//!
//! The nested `cargo build --release --locked --target wasm32-wasip2` gets its own target dir
//! (sharing the outer one would dead-lock on cargo's lock) and an environment cleaned of the
//! outer build's flags (host link flags break the wasm link). Every cdylib member of the
//! workspace is embedded through a generated `bundled_plugins.rs`:
//! `pub static BUNDLED: &[(&str, &[u8])] = &[("git", include_bytes!(...)), ...]`.
//!
//! `BRAIN_PREBUILT_PLUGINS=/dir` embeds the `*.wasm` files of that directory instead and builds
//! nothing (for `cargo check`, clippy and rust-analyzer, or a machine without the wasm target).
//! `BRAIN_PREBUILT_PLUGINS=none` embeds no plugin at all.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BRAIN_PREBUILT_PLUGINS");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ has a parent").to_path_buf();

    let plugins: Vec<(String, PathBuf)> = match std::env::var("BRAIN_PREBUILT_PLUGINS") {
        Ok(dir) if dir == "none" => Vec::new(),
        Ok(dir) if !dir.is_empty() => prebuilt(Path::new(&dir)),
        _ => build_workspace(&root, &out_dir),
    };

    let mut src = String::from("pub static BUNDLED: &[(&str, &[u8])] = &[\n");
    for (name, path) in &plugins {
        writeln!(src, "    ({name:?}, include_bytes!({:?})),", path.display().to_string()).unwrap();
    }
    src.push_str("];\n");
    write_if_changed(&out_dir.join("bundled_plugins.rs"), &src);
}

fn write_if_changed(path: &Path, content: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(content) {
        std::fs::write(path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// `*.wasm` files of a directory; the name is the file stem with `_` read as `-`.
fn prebuilt(dir: &Path) -> Vec<(String, PathBuf)> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("BRAIN_PREBUILT_PLUGINS={}: cannot read the directory: {e}", dir.display()));
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().replace('_', "-");
            (name, std::fs::canonicalize(&p).unwrap_or(p))
        })
        .collect();
    out.sort();
    out
}

/// The nested build's target dir: next to the outer target dir's profiles when it can be found
/// (so debug, release, check and test builds share one plugin build), else under OUT_DIR.
fn nested_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR = <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out
    for dir in out_dir.ancestors().skip(1) {
        if dir.join("CACHEDIR.TAG").is_file() {
            return dir.join("brain-plugins");
        }
    }
    out_dir.join("plugins-target")
}

fn build_workspace(root: &Path, out_dir: &Path) -> Vec<(String, PathBuf)> {
    let ws = root.join("plugins");
    let manifest = ws.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    println!("cargo:rerun-if-changed={}", ws.join("Cargo.lock").display());
    println!("cargo:rerun-if-changed={}", root.join("plugin-api/wit").display());
    println!("cargo:rerun-if-changed={}", root.join("plugin-api/rust/src").display());
    println!("cargo:rerun-if-changed={}", root.join("plugin-api/rust/Cargo.toml").display());

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let members = members(&cargo, &manifest);
    for m in &members {
        // The whole member directory: sources, manifests, build scripts, embedded assets.
        println!("cargo:rerun-if-changed={}", m.dir.display());
    }

    let target_dir = nested_target_dir(out_dir);
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--locked", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    clean_env(&mut cmd);
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo for the bundled plugins: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("can't find crate for `std`")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("target may not be installed")
        {
            format!(
                "\n\nThe {TARGET} target is not installed. Install it with:\n\n    rustup target add {TARGET}\n\n\
                 (or set BRAIN_PREBUILT_PLUGINS=<dir of .wasm files> to embed prebuilt plugins)\n"
            )
        } else if stderr.contains("--locked") || stderr.contains("lock file") {
            "\n\nplugins/Cargo.lock is out of date: run `cargo update --manifest-path plugins/Cargo.toml -w` and commit it.\n".to_string()
        } else {
            String::new()
        };
        panic!("building the bundled plugins (plugins/, for {TARGET}) failed:\n{stderr}{hint}");
    }

    let release = target_dir.join(TARGET).join("release");
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for m in &members {
        let file = release.join(format!("{}.wasm", m.lib_name));
        if !file.is_file() {
            panic!("the plugin `{}` built, but {} is missing", m.name, file.display());
        }
        // Rebuild when any source the plugin was compiled from changes (path dependencies too).
        for dep in dep_info(&release.join(format!("{}.d", m.lib_name))) {
            if dep.starts_with(root) && !dep.starts_with(&target_dir) && seen.insert(dep.clone()) {
                println!("cargo:rerun-if-changed={}", dep.display());
            }
        }
        out.push((m.name.clone(), file));
    }
    out.sort();
    out
}

struct Member {
    name: String,
    lib_name: String,
    dir: PathBuf,
}

/// The workspace's cdylib members, from `cargo metadata --no-deps`.
fn members(cargo: &std::ffi::OsStr, manifest: &Path) -> Vec<Member> {
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"]).arg(manifest);
    clean_env(&mut cmd);
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo metadata for plugins/: {e}"));
    if !output.status.success() {
        panic!("cargo metadata for plugins/ failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let mut out = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let Some(target) = pkg["targets"].as_array().into_iter().flatten().find(|t| {
            t["crate_types"].as_array().into_iter().flatten().any(|c| c == "cdylib")
        }) else {
            continue;
        };
        let name = pkg["name"].as_str().unwrap_or_default().to_string();
        let lib_name = target["name"].as_str().unwrap_or(&name).replace('-', "_");
        let dir = Path::new(pkg["manifest_path"].as_str().unwrap_or_default())
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        out.push(Member { name, lib_name, dir });
    }
    out
}

/// Paths listed in a Makefile-style dep-info file (`out: a b c`).
fn dep_info(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else { continue };
        let mut cur = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    cur.push(' ');
                    chars.next();
                }
                ' ' => {
                    if !cur.is_empty() {
                        out.push(PathBuf::from(std::mem::take(&mut cur)));
                    }
                }
                _ => cur.push(c),
            }
        }
        if !cur.is_empty() {
            out.push(PathBuf::from(cur));
        }
    }
    out
}

/// Drops what the outer build sets for itself: its flags, profile and target settings would
/// leak into the wasm build and break its link.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_TARGET_")
            || k.starts_with("CARGO_ENCODED_")
            || k.starts_with("CARGO_CFG_")
            || k.starts_with("CARGO_FEATURE_")
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k == "CARGO_MAKEFLAGS"
            || k == "RUSTC_WORKSPACE_WRAPPER"
            || k == "RUSTDOCFLAGS"
            || k == "__CARGO_FIX_PLZ"
            || k == "CARGO_PRIMARY_PACKAGE"
            || k == "CARGO_LLVM_COV"
            || k == "TARGET"
            || k == "HOST"
            || k == "OUT_DIR"
            || k == "OPT_LEVEL"
            || k == "PROFILE"
            || k == "DEBUG"
            || k == "NUM_JOBS"
        {
            cmd.env_remove(k);
        }
    }
    // WASM SIMD (wasmtime enables it by default): memchr and LLVM's vectorizer use it in the
    // filters that run on every collected example (~10 % less CPU per example, bench/curation.sh).
    cmd.env("RUSTFLAGS", "-C target-feature=+simd128");
}
