//! Reading JSONL data files line by line. A file is read as bytes and each line decoded on its
//! own, so a line that is not UTF-8 is an error naming the file and that line (reading the whole
//! file as a string would fail without saying where).

use std::path::Path;

use crate::error::{io, Error, Result};

/// The non-blank lines of `path` with their 1-based line numbers (`\n` or `\r\n` endings);
/// `Ok(None)` if the file does not exist. A line that is not valid UTF-8 is an
/// [`Error::Data`] naming the file, the line and the byte column.
pub fn read_lines(path: &Path) -> Result<Option<Vec<(usize, String)>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    decode_lines(path, &bytes).map(Some)
}

/// [`read_lines`] of bytes already read from `path`.
pub fn decode_lines(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| Error::Data {
            file: path.to_path_buf(),
            line: i + 1,
            msg: format!("not valid UTF-8 at byte {} of the line; save the file as UTF-8", e.valid_up_to() + 1),
        })?;
        if !line.trim().is_empty() {
            out.push((i + 1, line.to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_the_line_and_blank_lines_keep_numbering() {
        let p = Path::new("d/train.jsonl");
        let lines = decode_lines(p, b"{\"a\":1}\r\n\n{\"b\":2}\n").unwrap();
        assert_eq!(lines, vec![(1, "{\"a\":1}".to_string()), (3, "{\"b\":2}".to_string())]);
        let e = decode_lines(p, b"{\"a\":1}\n\n{\"text\":\"caf\xe9\"}\n").unwrap_err();
        assert_eq!(e.to_string(), "d/train.jsonl:3: not valid UTF-8 at byte 13 of the line; save the file as UTF-8");
    }
}
