//! A base model's fingerprint: SHA-256 over `config.json`, the weights index, and for every weight
//! file its name, size, safetensors header (names, dtypes, shapes, offsets) and three 64 KiB
//! samples of its data (start, middle, end). Reading a few hundred KiB instead of gigabytes, it
//! still tells apart two checkpoints of one architecture (their data differs) and notices a
//! replaced or truncated file. A GGUF file (given directly or as `ollama:NAME`) is fingerprinted
//! by its size and samples of its bytes (its metadata lies at the start). `sha256:` + hex.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const SAMPLE: u64 = 64 * 1024;

/// The weight files of a model directory, as the loader finds them: the shards named by
/// `model.safetensors.index.json`, or `model.safetensors`, or every `*.safetensors` that is not
/// an adapter.
pub fn weight_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", index.display())))?;
        let mut files: Vec<PathBuf> = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect())
            .unwrap_or_default();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "safetensors") && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("adapter"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Hash `SAMPLE` bytes at the start, middle and end of `f`'s bytes from `start` to `start + len`.
fn samples(h: &mut Sha256, f: &mut File, start: u64, len: u64) -> std::io::Result<()> {
    for at in [0, len / 2, len.saturating_sub(SAMPLE)] {
        let at = at.min(len);
        let n = SAMPLE.min(len - at);
        f.seek(SeekFrom::Start(start + at))?;
        let mut buf = vec![0u8; n as usize];
        f.read_exact(&mut buf)?;
        field(h, &buf);
    }
    Ok(())
}

/// The fingerprint of the model a `--model` value names (directory, GGUF file, `ollama:NAME`).
pub fn fingerprint(model: &Path) -> std::io::Result<String> {
    let origin = brain_train::source::resolve(model).map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))?;
    match origin {
        brain_train::source::Origin::Dir(dir) => fingerprint_dir(&dir),
        brain_train::source::Origin::Gguf(file) => {
            let mut h = Sha256::new();
            field(&mut h, b"gguf");
            let mut f = File::open(&file)?;
            let size = f.metadata()?.len();
            h.update(size.to_le_bytes());
            samples(&mut h, &mut f, 0, size)?;
            Ok(format!("sha256:{}", hex::encode(h.finalize())))
        }
    }
}

/// The fingerprint of the model directory `dir`.
fn fingerprint_dir(dir: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    field(&mut h, &std::fs::read(dir.join("config.json"))?);
    match std::fs::read(dir.join("model.safetensors.index.json")) {
        Ok(index) => field(&mut h, &index),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => field(&mut h, b"no-index"),
        Err(e) => return Err(e),
    }
    let files = weight_files(dir)?;
    if files.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no safetensors weights in {}", dir.display())));
    }
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        field(&mut h, name.as_bytes());
        let mut f = File::open(&path)?;
        let size = f.metadata()?.len();
        h.update(size.to_le_bytes());
        let mut len = [0u8; 8];
        f.read_exact(&mut len)?;
        let header_len = u64::from_le_bytes(len);
        if header_len > size.saturating_sub(8) || header_len > 100 << 20 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is not a safetensors file", path.display())));
        }
        let mut header = vec![0u8; header_len as usize];
        f.read_exact(&mut header)?;
        field(&mut h, &header);
        let data_start = 8 + header_len;
        samples(&mut h, &mut f, data_start, size - data_start)?;
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_model(dir: &Path, data: &[u8]) {
        std::fs::write(dir.join("config.json"), br#"{"model_type":"qwen2"}"#).unwrap();
        let header = br#"{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(data);
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    }

    #[test]
    fn same_files_same_print_and_data_changes_it() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_model(a.path(), &[1, 2, 3, 4]);
        write_model(b.path(), &[1, 2, 3, 4]);
        let fa = fingerprint(a.path()).unwrap();
        assert!(fa.starts_with("sha256:") && fa.len() == 7 + 64);
        assert_eq!(fa, fingerprint(b.path()).unwrap());
        write_model(b.path(), &[1, 2, 3, 5]);
        assert_ne!(fa, fingerprint(b.path()).unwrap());
        write_model(b.path(), &[1, 2, 3, 4]);
        assert_eq!(fa, fingerprint(b.path()).unwrap());
        std::fs::write(b.path().join("config.json"), br#"{"model_type":"llama"}"#).unwrap();
        assert_ne!(fa, fingerprint(b.path()).unwrap());
    }

    #[test]
    fn missing_weights_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), b"{}").unwrap();
        assert!(fingerprint(d.path()).is_err());
    }
}
