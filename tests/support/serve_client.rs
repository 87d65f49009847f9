//! `brain serve` from a test: start it on a free loopback port (read from its log) and talk
//! HTTP/1.1 to it by hand, so tests see the bytes a client sees (status line, headers, body).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common::Env;

/// A running `brain serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Everything it logged so far.
    pub stderr: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `brain serve ARGS --port 0` in `env`'s folder with extra environment variables.
pub fn start_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Server {
    let mut all = vec!["serve", "--port", "0"];
    all.extend_from_slice(args);
    let mut cmd = env.command(&all);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("brain serve");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    let log = stderr.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(port) = line.split(" at http://127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).and_then(|p| p.parse::<u16>().ok()) {
                let _ = tx.send(port);
            }
            log.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| panic!("brain serve did not start: {}", stderr.lock().unwrap()));
    Server { child, port, stderr }
}

/// One HTTP/1.1 request; (status, headers + body as text).
pub fn http(port: u16, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

/// The JSON body of a raw response.
pub fn json_body(raw: &str) -> Value {
    let body = raw.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {raw}"))
}

/// Reads one HTTP/1.1 request (as fake servers in tests receive it): the request line and
/// headers, and the body of `content-length` bytes; None when the connection closes first.
pub fn read_request(stream: &TcpStream) -> Option<(String, Vec<u8>)> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let (mut head, mut len) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// A response header's value (case-insensitive name).
pub fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The `data:` payloads of a server-sent-events body.
pub fn sse_data(raw: &str) -> Vec<String> {
    raw.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect()
}
