//! `brain export [--out DIR]`: write a dataset snapshot of the approved examples.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot directory (default: [export] out/<snapshot id>, with [export] out/latest
    /// pointing at it). An earlier snapshot there is replaced.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let store = ctx.open_store(&config)?;
    let report = crate::export::export(&store, &config, args.out.as_deref())?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if ctx.json {
        super::print_json(&report)?;
    } else if !ctx.quiet {
        println!("snapshot {} ({} approved examples) in {}", report.id, report.examples, report.dir.display());
        let s = |k: &str| report.splits.get(k).copied().unwrap_or(0);
        println!("  splits: train {}, valid {}, test {}", s("train"), s("valid"), s("test"));
        for form in crate::export::formats::FORMS {
            let l = |split: &str| report.lines.get(&format!("{form}/{split}.jsonl")).copied().unwrap_or(0);
            println!("  {form:<26} train {:>6}  valid {:>6}  test {:>6}", l("train"), l("valid"), l("test"));
        }
        println!("train with mlx-lm: mlx_lm.lora --train --data {}", report.dir.join("chat").display());
    }
    Ok(ExitCode::SUCCESS)
}
