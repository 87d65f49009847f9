//! Shared helpers of the end-to-end tests: a scratch directory with a config, the real `brain`
//! binary run in it, git repositories made with the `git` CLI, and store queries.
#![allow(dead_code)]

pub mod gen_repo;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A scratch directory holding `brain.toml` and the store.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::Builder::new().prefix("brain-e2e-").tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("brain.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.path().join("brain.db")
    }

    /// Writes `brain.toml`: `body` plus a `[plugins]` section sharing one compile cache
    /// between tests (unless `body` has its own).
    pub fn write_config(&self, body: &str) {
        let mut text = body.to_string();
        if !body.contains("[plugins]") {
            text.push_str(&format!("\n[plugins]\ncache_dir = {}\n", toml_str(plugin_cache())));
        }
        std::fs::write(self.config_path(), text).expect("writing brain.toml");
    }

    /// `brain ARGS` in this directory, with a private HOME and cache.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brain"));
        cmd.args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("XDG_CACHE_HOME", plugin_cache().parent().expect("cache has a parent"))
            .env_remove("BRAIN_CONFIG")
            .env_remove("BRAIN_LOG")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.command(args).output().expect("running brain");
        Run::from(out)
    }

    /// `brain status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let r = self.run(["status", "--json"]);
        r.assert_ok();
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", r.stdout))
    }

    /// Opens the store read-only for assertions.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open store")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).expect(sql)
    }
}

/// A finished `brain` run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.ok(), "brain failed ({:?})\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
    }

    /// A clean failure: non-zero exit (not a signal or a panic).
    #[track_caller]
    pub fn assert_failed(&self) {
        assert!(matches!(self.code, Some(c) if c != 0), "expected a failure, got {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        assert!(!self.stderr.contains("thread '"), "brain panicked:\n{}", self.stderr);
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// One compile cache for every test process (compiling a plugin is the slow part).
pub fn plugin_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache").join("components")
}

/// A TOML string literal.
pub fn toml_str(p: impl AsRef<OsStr>) -> String {
    toml::Value::String(p.as_ref().to_string_lossy().into_owned()).to_string()
}

/// `git ARGS` in `dir`, with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test Person", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("running git");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A new repository at `dir` (created).
pub fn init_repo(dir: &Path) {
    std::fs::create_dir_all(dir).expect("repo dir");
    git(dir, &["init", "-q"]);
}

/// Writes `files` and commits them with `message` (raw bytes: may be invalid UTF-8).
pub fn commit(dir: &Path, files: &[(&str, &[u8])], message: &[u8]) {
    for (name, content) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dirs");
        }
        std::fs::write(&path, content).expect("write file");
        git(dir, &["add", "--", name]);
    }
    let msg = dir.join(".git").join("TEST_MSG");
    std::fs::write(&msg, message).expect("message file");
    git(dir, &["commit", "-q", "--allow-empty-message", "-F", msg.to_str().expect("utf-8 path")]);
    if std::str::from_utf8(message).is_err() {
        // `git commit` re-encodes a non-UTF-8 message (as Latin-1); put the raw bytes back by
        // rewriting the commit object.
        let object = Command::new("git").args(["cat-file", "commit", "HEAD"]).current_dir(dir).output().expect("git cat-file");
        let body = object.stdout;
        let header_end = body.windows(2).position(|w| w == b"\n\n").expect("commit header") + 2;
        let raw = dir.join(".git").join("TEST_COMMIT");
        std::fs::write(&raw, [&body[..header_end], message].concat()).expect("commit file");
        let id = git(dir, &["hash-object", "-t", "commit", "-w", raw.to_str().expect("utf-8 path")]);
        git(dir, &["update-ref", "HEAD", &id]);
    }
}

/// Non-merge commits reachable from HEAD.
pub fn non_merge_commits(dir: &Path) -> i64 {
    git(dir, &["rev-list", "--count", "--no-merges", "HEAD"]).parse().expect("a count")
}

/// A repository of `commits` synthetic commits made with `git fast-import`.
pub fn generated_repo(dir: &Path, commits: usize) {
    init_repo(dir);
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
        gen_repo::write_history(&mut stdin, commits, 7).expect("writing history");
    }
    assert!(child.wait().expect("fast-import").success());
    // `git init` made HEAD point at main (init.defaultBranch above), which fast-import filled.
    assert_eq!(non_merge_commits(dir), commits as i64);
}

/// A `[[source]]` of the bundled git plugin over `repo`.
pub fn git_source(name: &str, repo: &Path) -> String {
    format!(
        "[[source]]\nname = {}\nplugin = \"git\"\ngrants = {{ git = [{repo}] }}\nconfig = {{ repos = [{repo}] }}\n\n",
        toml_str(name),
        repo = toml_str(repo)
    )
}
