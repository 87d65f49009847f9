//! Reading JSONL with bounded memory: a line longer than the cap is skipped (its bytes are
//! consumed, never stored) and reported with its length.

use std::io::{self, BufRead};

/// One line of a JSONL file, with its byte range `[start, end)` (the newline included).
#[derive(Debug, PartialEq)]
pub struct Line {
    pub start: u64,
    pub end: u64,
    pub body: Body,
}

#[derive(Debug, PartialEq)]
pub enum Body {
    /// A line ending in a newline (the newline and a trailing `\r` removed).
    Complete(Vec<u8>),
    /// Longer than the cap; holds the length. Ends in a newline or at the end of the file.
    TooLong(u64),
    /// The last bytes of the file with no newline after them: possibly a line still being
    /// written. Not consumed by a checkpoint unless the caller decides it is whole.
    Unterminated(Vec<u8>),
}

/// Iterates over the lines of `inner`, which is positioned at byte `start` of the file.
pub struct LineReader<R> {
    inner: R,
    pos: u64,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, start: u64, max_line_bytes: usize) -> Self {
        LineReader { inner, pos: start, max: max_line_bytes }
    }

    /// The next line, `None` at the end of the file.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let start = self.pos;
        let mut buf = Vec::new();
        let mut len: u64 = 0;
        let mut too_long = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if len == 0 {
                    return Ok(None);
                }
                let body = if too_long { Body::TooLong(len) } else { Body::Unterminated(buf) };
                return Ok(Some(Line { start, end: self.pos, body }));
            }
            let newline = avail.iter().position(|&b| b == b'\n');
            let take = newline.map_or(avail.len(), |i| i + 1);
            let content = newline.map_or(avail.len(), |i| i);
            if !too_long {
                if buf.len() + content > self.max {
                    too_long = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(&avail[..content]);
                }
            }
            len += content as u64;
            self.inner.consume(take);
            self.pos += take as u64;
            if newline.is_some() {
                let body = if too_long {
                    Body::TooLong(len)
                } else {
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                    Body::Complete(buf)
                };
                return Ok(Some(Line { start, end: self.pos, body }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    fn all(data: &[u8], cap: usize, buf_size: usize) -> Vec<Line> {
        let mut r = LineReader::new(BufReader::with_capacity(buf_size, Cursor::new(data.to_vec())), 0, cap);
        let mut out = vec![];
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn splits_lines_with_offsets() {
        let lines = all(b"ab\r\ncd\nef", 10, 3);
        assert_eq!(lines[0], Line { start: 0, end: 4, body: Body::Complete(b"ab".to_vec()) });
        assert_eq!(lines[1], Line { start: 4, end: 7, body: Body::Complete(b"cd".to_vec()) });
        assert_eq!(lines[2], Line { start: 7, end: 9, body: Body::Unterminated(b"ef".to_vec()) });
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn long_lines_are_skipped_not_stored() {
        let mut data = vec![b'x'; 10_000];
        data.push(b'\n');
        data.extend_from_slice(b"ok\n");
        data.extend(std::iter::repeat_n(b'y', 5000));
        let lines = all(&data, 100, 64);
        assert_eq!(lines[0].body, Body::TooLong(10_000));
        assert_eq!(lines[1], Line { start: 10_001, end: 10_004, body: Body::Complete(b"ok".to_vec()) });
        assert_eq!(lines[2].body, Body::TooLong(5000));
        assert!(all(b"", 10, 4).is_empty());
    }
}
