//! Safetensors load and save (through MLX: lazy loads, bf16/f16 kept exactly, metadata kept), and
//! MLX's own GGUF reader.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;

use crate::array::{check, Array};
use crate::error::{Error, Result};
use crate::sys;

/// Tensors of a safetensors file by name, with the file's `__metadata__`.
#[derive(Debug, Default)]
pub struct Safetensors {
    pub tensors: BTreeMap<String, Array>,
    pub metadata: BTreeMap<String, String>,
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.to_string_lossy().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("path with a NUL byte: {}", path.display())))
}

/// Names MLX's message after the file it was loading.
fn in_file(path: &Path) -> impl FnOnce(Error) -> Error + '_ {
    move |e| match e {
        Error::Exception(m) => Error::Exception(format!("{m} (loading {})", path.display())),
        e => e,
    }
}

/// Moves the tensors (and metadata) out of a bridge load result, then frees it.
fn take_loaded(b: &sys::Bridge, st: sys::St) -> Result<Safetensors> {
    let s = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    let mut res = Safetensors::default();
    let r = (|| -> Result<()> {
        for i in 0..unsafe { (b.st_len)(st) } {
            let name = s(unsafe { (b.st_name)(st, i) });
            let mut p: sys::Arr = std::ptr::null_mut();
            check(b, unsafe { (b.st_array)(st, i, &mut p) })?;
            res.tensors.insert(name, unsafe { Array::from_raw(p) });
        }
        for i in 0..unsafe { (b.st_meta_len)(st) } {
            res.metadata.insert(s(unsafe { (b.st_meta_key)(st, i) }), s(unsafe { (b.st_meta_val)(st, i) }));
        }
        Ok(())
    })();
    unsafe { (b.st_free)(st) };
    r.map(|_| res)
}

/// Loads a .safetensors file. Arrays are read from disk when first evaluated.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Safetensors> {
    let path = path.as_ref();
    let b = sys::bridge()?;
    let cp = cpath(path)?;
    let mut st: sys::St = std::ptr::null_mut();
    check(b, unsafe { (b.safetensors_load)(cp.as_ptr(), &mut st) }).map_err(in_file(path))?;
    take_loaded(b, st)
}

/// Loads the tensors of a .gguf file with MLX's own reader (`mlx::core::load_gguf`), by GGUF name.
///
/// What MLX 0.32.4 does with each tensor type (measured against gguf-py's dequantization):
/// - F32, F16: as stored. BF16: converted to float16 (values beyond ±65504 become inf).
/// - Q4_0, Q4_1, Q8_0: an affine triple `NAME.weight` (uint32, packed 4 or 8 bits),
///   `NAME.scales`, `NAME.biases` (float16), group size 32 — the `.weight` suffix of the name is
///   replaced for the scales and biases. Q8_0 is stored as `q + 128` with bias `-128·scale`,
///   Q4_0 with bias `-8·scale`.
/// - Q2_K, Q6_K: dequantized to float16. Q4_K: dequantized to float16 **incorrectly** (each odd
///   32-element sub-block gets the scale and min of the even one before it) — do not use this
///   reader for Q4_K files.
/// - Q5_0, Q5_1, Q3_K, Q5_K, Q8_K, IQ*: an error ("gguf_tensor_to_f16 failed").
///
/// MLX opens the file read-write and maps it shared (it never writes during a load), so a file
/// this process may not write fails; this is checked first and said plainly.
pub fn load_gguf(path: impl AsRef<Path>) -> Result<BTreeMap<String, Array>> {
    let path = path.as_ref();
    if let Err(e) = std::fs::OpenOptions::new().read(true).append(true).open(path) {
        return Err(Error::InvalidArgument(format!(
            "MLX's GGUF reader opens files read-write and cannot open {}: {e}",
            path.display()
        )));
    }
    let b = sys::bridge()?;
    let cp = cpath(path)?;
    let mut st: sys::St = std::ptr::null_mut();
    check(b, unsafe { (b.gguf_load)(cp.as_ptr(), &mut st) }).map_err(in_file(path))?;
    Ok(take_loaded(b, st)?.tensors)
}

/// Saves `tensors` (evaluating them) with `metadata` as a .safetensors file.
pub fn save_safetensors<'a, K: AsRef<str>>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (K, &'a Array)>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let b = sys::bridge()?;
    let cp = cpath(path.as_ref())?;
    let cstr = |s: &str| CString::new(s).map_err(|_| Error::InvalidArgument(format!("name with a NUL byte: {s:?}")));
    let mut names = Vec::new();
    let mut arrs = Vec::new();
    for (k, a) in tensors {
        names.push(cstr(k.as_ref())?);
        arrs.push(a.raw());
    }
    let mut mk = Vec::new();
    let mut mv = Vec::new();
    for (k, v) in metadata {
        mk.push(cstr(k)?);
        mv.push(cstr(v)?);
    }
    let np: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
    let mkp: Vec<*const c_char> = mk.iter().map(|c| c.as_ptr()).collect();
    let mvp: Vec<*const c_char> = mv.iter().map(|c| c.as_ptr()).collect();
    check(b, unsafe {
        (b.safetensors_save)(cp.as_ptr(), np.as_ptr(), arrs.as_ptr(), arrs.len() as c_int, mkp.as_ptr(), mvp.as_ptr(), mkp.len() as c_int)
    })
}
