//! `brain launch`: one brain command as the ranks of an MLX distributed group (the ring
//! backend over TCP), as `mlx.launch` does for Python scripts.
//!
//! - `-n N`: N ranks on this machine over loopback (testing, multi-GPU boxes).
//! - `--hostfile hosts.json`: one rank per entry of mlx.launch's hostfile
//!   (`[{"ssh": "host1", "ips": ["10.0.0.1"]}, …]`), started over ssh in the same folder, with
//!   the `MLX_*` and `BRAIN_*` environment forwarded; `brain` must be on each host's PATH.
//!
//! Every rank gets `MLX_RANK` and `MLX_HOSTFILE` (the ring's addresses), which
//! brain-train's `distributed::world` reads. Each line a rank prints is prefixed with its rank.
//! When a rank fails, the others are stopped (a peer waiting in an all-reduce would wait
//! forever), and the exit code is the worst of the ranks that ended on their own.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use super::Ctx;

/// The first port of a ring across machines (rank i listens on port + i).
const DEFAULT_PORT: u16 = 32323;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ranks on this machine, over loopback.
    #[arg(short = 'n', long = "ranks", value_name = "N", conflicts_with = "hostfile", required_unless_present = "hostfile")]
    pub ranks: Option<usize>,
    /// mlx.launch's hostfile: a JSON list of {"ssh": HOST, "ips": [IP, …]}, one rank each.
    #[arg(long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
    /// First TCP port of the ring (rank i listens on it + i); default: free ports on loopback,
    /// 32323 across machines.
    #[arg(long)]
    pub port: Option<u16>,
    /// The brain command every rank runs, after `--` (e.g. `-- train --data exports/latest/chat`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Host {
    ssh: String,
    ips: Vec<String>,
}

/// One rank to start: its ring address and how to run it.
#[derive(Debug)]
struct Rank {
    address: String,
    ssh: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    if a.command.first().is_some_and(|c| c == "launch") {
        bail!("`brain launch -- launch …` would nest launches; give the command the ranks run, e.g. `-- train …`");
    }
    let ranks = plan(&a)?;
    let ring: Vec<Vec<String>> = ranks.iter().map(|r| vec![r.address.clone()]).collect();
    let hostfile_json = serde_json::to_string(&ring)?;
    let dir = tempfile::Builder::new().prefix("brain-launch-").tempdir().context("a folder for the ring's hostfile")?;
    let hostfile = dir.path().join("ring.json");
    std::fs::write(&hostfile, &hostfile_json).with_context(|| format!("writing {}", hostfile.display()))?;
    if !ctx.quiet {
        let addrs: Vec<&str> = ranks.iter().map(|r| r.address.as_str()).collect();
        eprintln!("brain launch: {} ranks, ring {}: brain {}", ranks.len(), addrs.join(" "), a.command.join(" "));
    }
    let mut children = Vec::with_capacity(ranks.len());
    let mut relays = Vec::new();
    for (i, r) in ranks.iter().enumerate() {
        let mut cmd = match &r.ssh {
            None => {
                let mut c = Command::new(std::env::current_exe().context("finding the brain binary")?);
                c.args(&a.command).env("MLX_RANK", i.to_string()).env("MLX_HOSTFILE", &hostfile);
                c
            }
            Some(host) => remote(host, i, &hostfile_json, &a.command)?,
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting rank {i}"))?;
        if !ctx.quiet {
            eprintln!("brain launch: rank {i} is process {}", child.id());
        }
        relays.push(relay(child.stdout.take().expect("piped"), i, false));
        relays.push(relay(child.stderr.take().expect("piped"), i, true));
        children.push(child);
    }
    let code = supervise(&mut children)?;
    for r in relays {
        let _ = r.join();
    }
    Ok(code)
}

/// The ranks: loopback ports, or the hostfile's hosts.
fn plan(a: &Args) -> anyhow::Result<Vec<Rank>> {
    if let Some(path) = &a.hostfile {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the hostfile {}", path.display()))?;
        let hosts: Vec<Host> = serde_json::from_str(&text)
            .with_context(|| format!("{}: expected mlx.launch's format, [{{\"ssh\": \"host\", \"ips\": [\"10.0.0.1\"]}}, …]", path.display()))?;
        if hosts.len() < 2 {
            bail!("{}: a hostfile needs at least two hosts (use -n N for ranks on this machine)", path.display());
        }
        let port = a.port.unwrap_or(DEFAULT_PORT);
        return hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let ip = h.ips.first().with_context(|| format!("{}: host {:?} has no ips", path.display(), h.ssh))?;
                Ok(Rank { address: format!("{ip}:{}", u32::from(port) + i as u32), ssh: Some(h.ssh) })
            })
            .collect();
    }
    let n = a.ranks.expect("clap requires -n or --hostfile");
    if n < 1 {
        bail!("-n must be at least 1");
    }
    let ports: Vec<u16> = match a.port {
        Some(p) => (0..n).map(|i| p + i as u16).collect(),
        None => free_ports(n)?,
    };
    Ok(ports.into_iter().map(|p| Rank { address: format!("127.0.0.1:{p}"), ssh: None }).collect())
}

/// `n` distinct ports free on loopback now (held together while chosen).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let held: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>().context("finding free ports")?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// `ssh HOST '…'`: writes the ring's hostfile there, then runs brain in the same folder with
/// the rank's settings and the `MLX_*` / `BRAIN_*` environment of this process.
fn remote(host: &str, rank: usize, hostfile_json: &str, command: &[String]) -> anyhow::Result<Command> {
    let cwd = std::env::current_dir().context("the current folder")?;
    let remote_hostfile = format!("/tmp/brain-ring-{}-{rank}.json", std::process::id());
    let mut env: Vec<String> = std::env::vars()
        .filter(|(k, _)| (k.starts_with("MLX_") || k.starts_with("BRAIN_")) && k != "MLX_RANK" && k != "MLX_HOSTFILE")
        .map(|(k, v)| format!("{k}={}", quote(&v)))
        .collect();
    env.push(format!("MLX_RANK={rank}"));
    env.push(format!("MLX_HOSTFILE={}", quote(&remote_hostfile)));
    let args: Vec<String> = command.iter().map(|c| quote(c)).collect();
    let script = format!(
        "printf '%s' {} > {} && cd {} && exec env {} brain {}",
        quote(hostfile_json),
        quote(&remote_hostfile),
        quote(&cwd.to_string_lossy()),
        env.join(" "),
        args.join(" ")
    );
    let mut c = Command::new("ssh");
    c.arg(host).arg(script);
    Ok(c)
}

/// A POSIX shell single-quoted word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Copies a rank's output line by line, prefixed with its rank.
fn relay(stream: impl std::io::Read + Send + 'static, rank: usize, to_stderr: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if to_stderr {
                let _ = writeln!(std::io::stderr().lock(), "[rank {rank}] {line}");
            } else {
                let _ = writeln!(std::io::stdout().lock(), "[rank {rank}] {line}");
            }
        }
    })
}

/// Waits for every rank; when one fails, stops the others. Returns the worst exit code of the
/// ranks that ended on their own (a signal counts as 128 + its number), success when all did.
fn supervise(children: &mut [Child]) -> anyhow::Result<ExitCode> {
    let n = children.len();
    let mut done: Vec<Option<std::process::ExitStatus>> = vec![None; n];
    let mut stopped = vec![false; n];
    let mut failed = false;
    while done.iter().any(Option::is_none) {
        for i in 0..n {
            if done[i].is_some() {
                continue;
            }
            let Some(status) = children[i].try_wait().with_context(|| format!("waiting for rank {i}"))? else { continue };
            done[i] = Some(status);
            if status.success() || failed {
                continue;
            }
            failed = true;
            // A rank that died takes its peers' connections down with it: report every rank
            // that has already ended badly (the cause is among them), then stop the rest.
            for j in 0..n {
                if j == i || done[j].is_some() {
                    continue;
                }
                if let Ok(Some(s)) = children[j].try_wait() {
                    done[j] = Some(s);
                    if !s.success() {
                        eprintln!("brain launch: rank {j} {}", describe(s));
                    }
                }
            }
            eprintln!("brain launch: rank {i} {}; stopping the other ranks", describe(status));
            for j in 0..n {
                if done[j].is_some() {
                    continue;
                }
                let _ = children[j].kill();
                stopped[j] = true;
                tracing::info!("stopped rank {j}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let worst = done.iter().zip(&stopped).filter(|(_, s)| !**s).filter_map(|(d, _)| d.map(code_of)).max().unwrap_or(0);
    Ok(ExitCode::from(u8::try_from(worst.clamp(0, 255)).unwrap_or(1)))
}

/// A process's exit code, or 128 + the signal that ended it (as a shell reports it).
fn code_of(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(1)
}

fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    match status.code() {
        Some(c) => format!("exited with code {c}"),
        None => "ended abnormally".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_commands_quote_everything_and_forward_the_ring() {
        let c = remote("gpu-2", 1, r#"[["10.0.0.1:32323"],["10.0.0.2:32324"]]"#, &["train".into(), "--data".into(), "it's here".into()]).unwrap();
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[0], "gpu-2");
        let script = &args[1];
        assert!(script.starts_with(r#"printf '%s' '[["10.0.0.1:32323"],["10.0.0.2:32324"]]' > '/tmp/brain-ring-"#), "{script}");
        assert!(script.contains("MLX_RANK=1 ") && script.contains("MLX_HOSTFILE='/tmp/brain-ring-"), "{script}");
        assert!(script.ends_with(r#"brain 'train' '--data' 'it'\''s here'"#), "{script}");
    }

    #[test]
    fn hostfiles_give_one_rank_per_host_on_consecutive_ports() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts.json");
        std::fs::write(&p, r#"[{"ssh": "a", "ips": ["10.0.0.1"]}, {"ssh": "b", "ips": ["10.0.0.2", "10.1.0.2"]}]"#).unwrap();
        let a = Args { ranks: None, hostfile: Some(p.clone()), port: Some(5000), command: vec!["train".into()] };
        let ranks = plan(&a).unwrap();
        let addrs: Vec<&str> = ranks.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addrs, ["10.0.0.1:5000", "10.0.0.2:5001"]);
        std::fs::write(&p, r#"[{"ssh": "a"}]"#).unwrap();
        assert!(plan(&a).unwrap_err().to_string().contains("mlx.launch's format"));
    }
}
