//! `brain review` on a terminal (a pseudo-terminal made by the test): single keys decide, `r`
//! asks for a reason, `u` undoes, `q` quits.

mod common;
#[path = "curation_support.rs"]
mod support;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use support::*;

/// A child process on a pseudo-terminal: keys in, screen out.
struct Terminal {
    master: std::fs::File,
    screen: Arc<Mutex<Vec<u8>>>,
    child: std::process::Child,
}

impl Terminal {
    fn spawn(mut cmd: std::process::Command) -> Option<Terminal> {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into the integers it is given.
        let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        if rc != 0 {
            eprintln!("no pseudo-terminal here; skipping");
            return None;
        }
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        cmd.stdin(slave.try_clone().unwrap()).stdout(slave.try_clone().unwrap()).stderr(slave);
        let child = cmd.spawn().expect("spawn on the terminal");
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Some(Terminal { master, screen, child })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until `what` has appeared `n` times on the screen.
    fn wait_for(&self, what: &str, n: usize) {
        let start = Instant::now();
        while self.text().matches(what).count() < n {
            assert!(start.elapsed() < Duration::from_secs(30), "waited for {what:?} x{n}; screen:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }
}

#[test]
fn single_keys_on_a_terminal() {
    let env = Env::new();
    let repo = env.path().join("repo");
    prose_repo(&repo, 4, "t");
    env.write_config(&git_source("notes", &repo));
    env.run(["collect"]).assert_ok();
    let ids = pending_ids(&env);

    let mut cmd = env.command(["review"]);
    cmd.env("TERM", "dumb");
    let Some(mut term) = Terminal::spawn(cmd) else { return };
    const PROMPT: &str = "[a]pprove [r]eject [e]dit [s]kip [u]ndo [q]uit > ";
    term.wait_for(PROMPT, 1);
    term.keys("a");
    term.wait_for(PROMPT, 2);
    term.keys("r");
    term.wait_for("reason: ", 1);
    term.keys("not mine\r");
    term.wait_for(PROMPT, 3);
    term.keys("u");
    term.wait_for("undone", 1);
    term.wait_for(PROMPT, 4);
    term.keys("s");
    term.wait_for(PROMPT, 5);
    term.keys("q");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = term.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "brain review did not quit:\n{}", term.text());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{}", term.text());
    assert!(term.text().contains("1 approved (0 edited), 0 rejected, 1 skipped, 1 undone"), "{}", term.text());
    assert_eq!(status_of(&env, &ids[0]).0, "approved");
    assert_eq!(status_of(&env, &ids[1]).0, "pending", "the rejection was undone");
    assert_eq!(status_of(&env, &ids[2]).0, "pending");
}
