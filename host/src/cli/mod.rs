//! The `brain` command line: one file per command group.
//!
//! Every command gets a [`Ctx`] (global flags, lazy config loading) and returns
//! `anyhow::Result<ExitCode>`; errors are printed once, here, as `error: …` with their causes.
//! To add a command group (review, export, train, dpo, eval, generate/chat, runs, models, fuse,
//! pipeline, demo, model init-tiny, tokenize): a file beside these with an `Args` struct and a
//! `run(ctx, args)`, one variant in [`Command`], one arm in [`run`].

mod collect;
mod export;
mod fuse;
mod init;
mod models;
mod plugins;
mod review;
pub mod runs;
mod ship;
mod status;
pub mod train;
mod model;
mod dpo;
mod eval;
mod generate;
mod pipeline;
mod demo;
mod tokenize;
mod serve;
mod launch;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_FILE};
use crate::plugin::PluginHost;
use crate::store::Store;

/// SAM Brain: turn your own work into a personal language model.
#[derive(Debug, Parser)]
#[command(name = "brain", version, about, propagate_version = true)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "BRAIN_CONFIG", default_value = DEFAULT_FILE, value_name = "PATH")]
    pub config: PathBuf,
    /// Print data as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented default config.
    Init(init::Args),
    /// List and inspect plugins.
    #[command(subcommand)]
    Plugins(plugins::Command),
    /// Run the source plugins and store what they find.
    Collect(collect::Args),
    /// What the store holds: counts by source, kind and review status.
    Status(status::Args),
    /// Review examples: interactively, or in batches by score, source and kind.
    Review(review::Args),
    /// Write a dataset snapshot (train/valid/test) of the approved examples; `export ollama
    /// NAME` ships a model to Ollama.
    Export(ship::ExportArgs),
    /// Train, DPO and eval runs: list them; `runs show ID` for loss curves.
    Runs(runs::Args),
    /// Model versions: list with eval numbers, promote, roll back.
    Models(models::Args),
    /// Merge an adapter into its base model (HF-layout directory).
    Fuse(fuse::Args),
    /// Fine-tune (LoRA / full SFT) on a dataset directory; `--test` scores the test split.
    Train(train::Args),
    /// Preference-tune (DPO, IPO, hinge, robust) on chosen/rejected pairs.
    Dpo(dpo::Args),
    /// Run `train` or `dpo` data-parallel as ranks of one MLX distributed group: `launch -n 2 --
    /// train …` on this machine, `launch --hostfile hosts.json -- train …` across machines.
    Launch(launch::Args),
    /// Evaluate a model version on the held-out test split; `--compare A B`.
    Eval(eval::Args),
    /// Generate one reply (flags as mlx-lm's generate).
    Generate(generate::Args),
    /// Chat with the active model in the terminal.
    Chat(generate::Args),
    /// Serve the active model with the OpenAI chat API (`/v1/chat/completions`, streaming too).
    Serve(serve::Args),
    /// Models: `model info MODEL`, `model init-tiny DIR`.
    #[command(subcommand)]
    Model(model::Command),
    /// The whole path, unattended: `pipeline run [--force] [--dry-run]`.
    #[command(subcommand)]
    Pipeline(pipeline::Command),
    /// Run the whole path on embedded defaults in a new directory.
    Demo(demo::Args),
    /// Show the token ids and loss mask training gives each line of a JSONL file.
    Tokenize(tokenize::Args),
}

/// What every command gets: the global flags, and the config and store when it asks.
pub struct Ctx {
    pub config_path: PathBuf,
    pub json: bool,
    pub quiet: bool,
    /// `-v` count (`generate --verbose` prints statistics).
    pub verbose: u8,
}

impl Ctx {
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config_path)?)
    }

    pub fn open_store(&self, config: &Config) -> anyhow::Result<Store> {
        Ok(Store::open(&config.store_path)?)
    }

    pub fn plugin_host(&self, config: &Config) -> anyhow::Result<PluginHost> {
        PluginHost::for_config(config)
    }

    /// Progress bars only for a person watching.
    pub fn progress(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }
}

/// Parses the command line, runs the command, prints any error; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let ctx = Ctx { config_path: cli.config, json: cli.json, quiet: cli.quiet, verbose: cli.verbose };
    match run(&ctx, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(ctx: &Ctx, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(args) => init::run(ctx, args),
        Command::Plugins(cmd) => plugins::run(ctx, cmd),
        Command::Collect(args) => collect::run(ctx, args),
        Command::Train(args) => train::run(ctx, args),
        Command::Dpo(args) => dpo::run(ctx, args),
        Command::Eval(args) => eval::run(ctx, args),
        Command::Generate(args) => generate::generate(ctx, args),
        Command::Chat(args) => generate::chat(ctx, args),
        Command::Serve(args) => serve::run(ctx, args),
        Command::Model(cmd) => model::run(ctx, cmd),
        Command::Pipeline(cmd) => pipeline::run(ctx, cmd),
        Command::Demo(args) => demo::run(ctx, args),
        Command::Tokenize(args) => tokenize::run(ctx, args),
        Command::Status(args) => status::run(ctx, args),
        Command::Review(args) => review::run(ctx, args),
        Command::Export(args) => ship::run_export(ctx, args),
        Command::Runs(args) => runs::run(ctx, args),
        Command::Models(args) => models::run(ctx, args),
        Command::Fuse(args) => fuse::run(ctx, args),
        Command::Launch(args) => launch::run(ctx, args),
    }
}

/// Logs go to stderr. `BRAIN_LOG` (tracing's env-filter syntax) overrides the flags.
fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("BRAIN_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        // Colour codes only for a terminal: logs piped to a file or another program stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
