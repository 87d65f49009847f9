//! `brain runs`: the run registry. `brain runs` lists runs; `brain runs show ID` prints one
//! run's summary and loss sparklines and writes its loss curves as a PNG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::Ctx;
use crate::registry::{plot, runs, spark};
use crate::store::runs::{RunFilter, RunRecord, RunStatus};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Only runs of this kind (sft, dpo, eval).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only runs with this status (running, done, failed, interrupted).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many, newest first (0 = all).
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// One run: summary, loss sparklines, and its loss curves written as a PNG.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A run id, a unique prefix of one, or `latest`.
    pub id: String,
    /// Where to write the loss-curve image (default: loss_curves.png in the run's directory).
    #[arg(long, value_name = "PNG")]
    pub out: Option<PathBuf>,
    /// Do not write the image.
    #[arg(long)]
    pub no_plot: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let store = ctx.open_store(&config)?;
    if let Some(Command::Show(show_args)) = args.command {
        return show(ctx, &config, &store, show_args);
    }
    let status = match args.status.as_deref() {
        None => None,
        Some(s) => Some(RunStatus::parse(s).with_context(|| format!("--status {s:?}: use running, done, failed or interrupted"))?),
    };
    let list = runs::list(&store, &RunFilter { kind: args.kind.clone(), status, limit: args.limit })?;
    if ctx.json {
        super::print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no runs yet (`brain train` records one)");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.kind.clone(),
                r.status.to_string(),
                short_time(&r.started_at),
                r.duration_s.map(duration).unwrap_or_else(|| "-".into()),
                headline(r).unwrap_or_else(|| "-".into()),
                r.base_model.as_deref().map(base_name).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&["ID", "KIND", "STATUS", "STARTED (UTC)", "TIME", "RESULT", "BASE"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, config: &crate::config::Config, store: &crate::store::Store, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let r = runs::find(store, &args.id)?;
    let metrics = store.run_metrics(&r.id)?;
    let curves = if args.no_plot {
        None
    } else {
        let path = args.out.clone().unwrap_or_else(|| default_curves_path(config, &r));
        plot::write_curves(&path, &r.id, &metrics)?.then_some(path)
    };
    if ctx.json {
        let m: std::collections::BTreeMap<&String, Vec<[f64; 2]>> = metrics.iter().map(|(k, v)| (k, v.iter().map(|&(s, x)| [s as f64, x]).collect())).collect();
        super::print_json(&serde_json::json!({"run": r, "metrics": m, "curves": curves}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let line = |k: &str, v: String| println!("{k:<10} {v}");
    line("run", r.id.clone());
    line("kind", format!("{}   status {}", r.kind, r.status));
    let mut when = format!("started {}", short_time(&r.started_at));
    if let Some(f) = &r.finished_at {
        when.push_str(&format!(", finished {}", short_time(f)));
    }
    if let Some(d) = r.duration_s {
        when.push_str(&format!(", {} of work", duration(d)));
    }
    line("time", when);
    let mut at = r.host.clone().unwrap_or_else(|| "?".into());
    if let Some(pid) = r.pid {
        at.push_str(&format!(" (pid {pid})"));
    }
    if let Some(d) = &r.device {
        at.push_str(&format!(", MLX device {d}"));
    }
    line("host", at);
    if let Some(b) = &r.base_model {
        let hash = r.base_hash.as_deref().map(|h| format!(" ({})", &h[..h.len().min(19)])).unwrap_or_default();
        line("base", format!("{b}{hash}"));
    }
    if let Some(a) = &r.adapter {
        line("adapter", a.clone());
    }
    if r.dir.is_some() && r.dir != r.adapter {
        line("dir", r.dir.clone().unwrap_or_default());
    }
    if let Some(s) = &r.snapshot_id {
        line("snapshot", s.clone());
    }
    if let Some(p) = &r.parent_id {
        line("parent", p.clone());
    }
    if let Some(e) = &r.error {
        line("error", e.clone());
    }
    if let Some(m) = store.model_of_run(&r.id)? {
        line("model", format!("{} ({})", m.version, m.status));
    }
    let finals = numbers(&r.final_metrics);
    if !finals.is_empty() {
        line("final", finals.iter().map(|(k, v)| format!("{k} {}", num(*v))).collect::<Vec<_>>().join("  "));
    }
    let mut curves_names: Vec<&String> = metrics.keys().filter(|k| k.contains("loss") || k.contains("rewards/")).collect();
    curves_names.sort_by_key(|k| (!k.contains("train") && k.as_str() != "loss", k.to_string()));
    if !curves_names.is_empty() {
        println!();
        let width = curves_names.iter().map(|k| k.len()).max().unwrap_or(0);
        for name in curves_names {
            let pts = &metrics[name];
            let values: Vec<f64> = pts.iter().map(|p| p.1).collect();
            let (first, last) = (values.first().copied().unwrap_or(f64::NAN), values.last().copied().unwrap_or(f64::NAN));
            println!(
                "{name:<width$}  {}  {} → {}  (steps {}–{}, {} points)",
                spark::sparkline(&values, 48),
                num(first),
                num(last),
                pts.first().map_or(0, |p| p.0),
                pts.last().map_or(0, |p| p.0),
                pts.len()
            );
        }
    } else {
        println!("\nno per-step metrics recorded");
    }
    if let Some(p) = curves {
        println!("\nloss curves {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `loss_curves.png` in the run's directory, or under `[train] runs_dir/<id>/`.
pub fn default_curves_path(config: &crate::config::Config, r: &RunRecord) -> PathBuf {
    match r.dir.as_deref().map(Path::new).filter(|d| d.is_dir()) {
        Some(dir) => dir.join("loss_curves.png"),
        None => config.train.runs_dir.join(&r.id).join("loss_curves.png"),
    }
}

/// The number that best sums up a run: validation loss, else test loss, else training loss.
fn headline(r: &RunRecord) -> Option<String> {
    for key in ["val_loss", "test_loss", "eval_loss", "train_loss", "loss", "routing_accuracy"] {
        if let Some(v) = r.final_metrics.get(key).and_then(|v| v.as_f64()) {
            return Some(format!("{key} {}", num(v)));
        }
    }
    None
}

fn numbers(v: &serde_json::Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            match x {
                serde_json::Value::Number(n) => out.extend(n.as_f64().map(|f| (k.clone(), f))),
                serde_json::Value::Object(_) => out.extend(numbers(x).into_iter().map(|(k2, f)| (format!("{k}/{k2}"), f))),
                _ => {}
            }
        }
    }
    out
}

pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else if v.fract() == 0.0 && a >= 100.0 {
        format!("{}", v as i64)
    } else {
        format!("{v:.4}")
    }
}

/// `2025-11-24T23:30:12.345Z` → `2025-11-24 23:30`.
pub(super) fn short_time(t: &str) -> String {
    if t.len() >= 16 {
        format!("{} {}", &t[..10], &t[11..16])
    } else {
        t.to_string()
    }
}

pub(super) fn duration(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

fn base_name(p: &str) -> String {
    Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.to_string())
}

/// Prints rows under a header, columns padded to their widest cell.
pub(super) fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        line
    };
    println!("{}", fmt(header.to_vec()));
    for r in rows {
        println!("{}", fmt(r.iter().map(String::as_str).collect()));
    }
}
