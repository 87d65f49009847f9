//! Builds the C++ bridge (src/bridge.cpp) against the pinned MLX wheel.
//!
//! MLX is found, in order, through:
//! 1. `MLX_DIR`: a prefix holding `include/mlx/` and `lib/libmlx.*`;
//! 2. an installed Python `mlx` of the pinned version (`python3 -m mlx --cmake-dir`; for the
//!    CUDA build only pip's CUDA install, `mlx[cuda13]`);
//! 3. the pinned wheel fetched with `pip download --no-deps` into
//!    `~/.cache/sam-brain/mlx-<wheel>-<version>/` and unpacked with Python's zipfile.
//!
//! The wheel is `mlx-cpu` on Linux, `mlx-metal` on macOS, `mlx-cuda-13` with the `cuda` feature
//! or `MLX_CUDA=1`. The bridge is a shared library in OUT_DIR (path exported to the crate as
//! `BRAIN_MLX_BRIDGE`), also copied next to the final binaries (target/<profile>/) so a moved
//! `target/` still finds it. Without g++, Python/pip or MLX the build fails with a message
//! saying what to install; `BRAIN_MLX_OPTIONAL=1` builds anyway (warning) and the reason becomes
//! the run-time error of the first MLX call.

use std::path::{Path, PathBuf};
use std::process::Command;

const MLX_VERSION: &str = "0.32.4";
/// The bridge's translation units (one shared library).
const BRIDGE_SOURCES: [&str; 11] = [
    "src/bridge.cpp",
    "src/bridge_adamw.cpp",
    "src/bridge_attention.cpp",
    "src/bridge_bf16mm.cpp",
    "src/bridge_ce.cpp",
    "src/bridge_qmatmul.cpp",
    "src/bridge_qrow.cpp",
    "src/bridge_rmsnorm.cpp",
    "src/bridge_rope.cpp",
    "src/bridge_swiglu.cpp",
    "src/bridge_util.cpp",
];
const BRIDGE_NAME: &str = if cfg!(target_os = "macos") {
    "libbrain_mlx_bridge.dylib"
} else {
    "libbrain_mlx_bridge.so"
};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for f in BRIDGE_SOURCES.iter().chain(["src/bridge_util.h", "src/bridge_qmatmul.h"].iter()) {
        println!("cargo:rerun-if-changed={f}");
    }
    for var in ["MLX_DIR", "MLX_CUDA", "CXX", "PYTHON", "BRAIN_MLX_CACHE", "BRAIN_MLX_OPTIONAL"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rustc-env=BRAIN_MLX_VERSION={MLX_VERSION}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let bridge = out_dir.join(BRIDGE_NAME);
    println!("cargo:rustc-env=BRAIN_MLX_BRIDGE={}", bridge.display());
    match build(&out_dir, &bridge) {
        Ok(prefix) => {
            println!("cargo:rustc-env=BRAIN_MLX_PREFIX={}", prefix.display());
            println!("cargo:rustc-env=BRAIN_MLX_BUILD_ERROR=");
            copy_next_to_binaries(&out_dir, &bridge);
        }
        Err(e) => {
            let msg = e.replace('\n', " ");
            if std::env::var("BRAIN_MLX_OPTIONAL").map(|v| v != "1").unwrap_or(true) {
                eprintln!("error: the MLX bridge cannot be built: {msg}");
                eprintln!(
                    "       (set BRAIN_MLX_OPTIONAL=1 to build without MLX: training commands \
                     then fail at run time with this message)"
                );
                std::process::exit(1);
            }
            // Opted out: the crate builds; the error reaches the user when MLX is first used.
            println!("cargo:warning=MLX bridge not built: {msg}");
            println!("cargo:rustc-env=BRAIN_MLX_PREFIX=");
            println!("cargo:rustc-env=BRAIN_MLX_BUILD_ERROR={msg}");
        }
    }
}

fn want_cuda() -> bool {
    std::env::var("CARGO_FEATURE_CUDA").is_ok()
        || std::env::var("MLX_CUDA").map(|v| v == "1" || v == "true").unwrap_or(false)
}

fn wheel_name() -> &'static str {
    if want_cuda() {
        "mlx-cuda-13"
    } else if cfg!(target_os = "macos") {
        "mlx-metal"
    } else {
        "mlx-cpu"
    }
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn build(out_dir: &Path, bridge: &Path) -> Result<PathBuf, String> {
    let prefix = find_mlx()?;
    let include = prefix.join("include");
    let lib = prefix.join("lib");
    let header_version = read_header_version(&include)?;
    if header_version != MLX_VERSION {
        println!(
            "cargo:warning=MLX at {} is {header_version}, the pinned version is {MLX_VERSION}",
            prefix.display()
        );
    }
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let mut cmd = Command::new(&cxx);
    cmd.args(["-std=c++20", "-O3", "-fPIC", "-shared"])
        .args(BRIDGE_SOURCES)
        .arg(format!("-I{}", include.display()))
        .arg(format!("-L{}", lib.display()))
        .arg("-lmlx")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(bridge);
    if include.join("metal_cpp").is_dir() {
        cmd.arg(format!("-I{}", include.join("metal_cpp").display()));
    }
    if cfg!(target_os = "macos") {
        cmd.args(["-Wl,-undefined,error", "-framework", "Accelerate"]);
    } else {
        cmd.args(["-Wl,--no-undefined", "-lpthread", "-ldl"]);
    }
    let tmp = out_dir.join("bridge-build.log");
    let output = cmd.output().map_err(|e| {
        format!(
            "cannot run the C++ compiler `{cxx}` ({e}); install g++ (Debian: apt-get install g++) \
             or set CXX"
        )
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let _ = std::fs::write(&tmp, stderr.as_bytes());
        let head: String = stderr.lines().take(20).collect::<Vec<_>>().join(" | ");
        return Err(format!(
            "compiling the bridge (src/bridge*.cpp) failed (full log: {}): {head}",
            tmp.display()
        ));
    }
    Ok(prefix)
}

fn read_header_version(include: &Path) -> Result<String, String> {
    let path = include.join("mlx/version.h");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("MLX headers missing ({}: {e})", path.display()))?;
    let get = |key: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("#define {key} ")).map(|v| v.trim().to_string()))
    };
    match (get("MLX_VERSION_MAJOR"), get("MLX_VERSION_MINOR"), get("MLX_VERSION_PATCH")) {
        (Some(a), Some(b), Some(c)) => Ok(format!("{a}.{b}.{c}")),
        _ => Err(format!("cannot read the MLX version from {}", path.display())),
    }
}

fn is_prefix(p: &Path) -> bool {
    p.join("include/mlx/mlx.h").is_file()
        && (p.join("lib/libmlx.so").is_file() || p.join("lib/libmlx.dylib").is_file())
}

fn find_mlx() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("MLX_DIR") {
        let p = PathBuf::from(&dir);
        return if is_prefix(&p) {
            Ok(p)
        } else {
            Err(format!("MLX_DIR={dir} has no include/mlx/mlx.h and lib/libmlx.*"))
        };
    }
    if let Some(p) = python_mlx() {
        // Any installed MLX serves the CPU build; the CUDA build wants pip's CUDA install, whose
        // libmlx finds the nvidia-* libraries beside it in site-packages.
        if !want_cuda() || is_cuda_install(&p) {
            return Ok(p);
        }
    }
    if want_cuda() {
        println!(
            "cargo:warning=building against the downloaded {} wheel: at run time its CUDA \
             libraries (cuBLAS, cuDNN, NCCL, NVRTC...) must be on LD_LIBRARY_PATH; with \
             `pip install 'mlx[cuda13]=={MLX_VERSION}'` the build uses that install instead",
            wheel_name()
        );
    }
    download_wheel()
}

/// Whether an installed MLX (site-packages/mlx) is the CUDA build: pip puts the metadata of the
/// `mlx-cuda-*` wheel that supplied its library beside it.
fn is_cuda_install(prefix: &Path) -> bool {
    let Some(entries) = prefix.parent().and_then(|site| std::fs::read_dir(site).ok()) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("mlx_cuda") && name.ends_with(".dist-info")
    })
}

/// An installed Python `mlx` of the pinned version.
fn python_mlx() -> Option<PathBuf> {
    let out = Command::new(python()).args(["-m", "mlx", "--cmake-dir"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !is_prefix(&p) {
        return None;
    }
    match read_header_version(&p.join("include")) {
        Ok(v) if v == MLX_VERSION => Some(p),
        Ok(v) => {
            println!(
                "cargo:warning=ignoring the installed Python mlx {v} at {} (pinned {MLX_VERSION})",
                p.display()
            );
            None
        }
        Err(_) => None,
    }
}

fn cache_root() -> PathBuf {
    if let Ok(d) = std::env::var("BRAIN_MLX_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".cache/sam-brain")
}

/// `pip download` the pinned wheel and unpack it (Python's zipfile) into the cache.
fn download_wheel() -> Result<PathBuf, String> {
    let wheel = wheel_name();
    let dir = cache_root().join(format!("{wheel}-{MLX_VERSION}"));
    let prefix = dir.join("mlx");
    if is_prefix(&prefix) {
        return Ok(prefix);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let py = python();
    let dl = dir.join("download");
    let status = Command::new(&py)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d"])
        .arg(&dl)
        .arg(format!("{wheel}=={MLX_VERSION}"))
        .status()
        .map_err(|e| {
            format!(
                "MLX not found (set MLX_DIR, or `pip install {wheel}=={MLX_VERSION}`), and \
                 running `{py} -m pip` to fetch it failed: {e}; install python3 and pip"
            )
        })?;
    if !status.success() {
        return Err(format!(
            "MLX not found and `pip download {wheel}=={MLX_VERSION}` failed; set MLX_DIR to an \
             MLX prefix or `pip install {wheel}=={MLX_VERSION}`"
        ));
    }
    let script = "import sys, zipfile, glob\n\
                  whls = glob.glob(sys.argv[1] + '/*.whl')\n\
                  assert whls, 'no wheel downloaded'\n\
                  for w in whls: zipfile.ZipFile(w).extractall(sys.argv[2])\n";
    let status = Command::new(&py)
        .args(["-c", script])
        .arg(&dl)
        .arg(&dir)
        .status()
        .map_err(|e| format!("unpacking the MLX wheel failed: {e}"))?;
    if !status.success() || !is_prefix(&prefix) {
        return Err(format!("the unpacked wheel in {} has no MLX prefix", dir.display()));
    }
    // zipfile drops the executable bits; shared libraries load without them, but keep them sane.
    Ok(prefix)
}

/// OUT_DIR is target/<profile>/build/mlx-*/out: copy the bridge to target/<profile>/.
fn copy_next_to_binaries(out_dir: &Path, bridge: &Path) {
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        if profile_dir.join("build").is_dir() {
            let dest = profile_dir.join(BRIDGE_NAME);
            let tmp = profile_dir.join(format!(".{BRIDGE_NAME}.tmp"));
            if std::fs::copy(bridge, &tmp).is_ok() {
                let _ = std::fs::rename(&tmp, &dest);
            }
        }
    }
}
