//! The pipeline's stages, in order, each recording its outcome in the report.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use brain_train::dpo::{DpoArgs, LossType};
use brain_train::eval::EvalArgs;
use brain_train::gguf::export::GgufType;
use brain_train::TrainArgs;
use serde_json::json;

use super::{PipelineOptions, PipelineReport};
use crate::collect::{collect, CollectOptions};
use crate::config::Config;
use crate::registry::models::{self, PromotionPolicy};
use crate::registry::runs;
use crate::ship::export::{export_ollama, OllamaOptions, Source};
use crate::store::runs::{RunFilter, RunStatus};
use crate::store::Store;
use crate::training::{self, eval_summary, new_run_dir, Lineage};

pub struct Stages<'a> {
    config: &'a Config,
    opts: &'a PipelineOptions,
    store: &'a mut Store,
    report: &'a mut PipelineReport,
    wanted: Vec<String>,
    /// A dry run's export, while the later stages read it.
    scratch: Option<Scratch>,
}

/// Lines of a JSONL file (0 when missing).
fn count_lines(path: &Path) -> u64 {
    std::fs::read_to_string(path).map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64).unwrap_or(0)
}

impl<'a> Stages<'a> {
    pub fn new(config: &'a Config, opts: &'a PipelineOptions, store: &'a mut Store, report: &'a mut PipelineReport) -> anyhow::Result<Self> {
        let wanted = opts.stages.clone().unwrap_or_else(|| config.pipeline.stages.clone());
        for s in &wanted {
            if !["collect", "export", "train", "dpo", "eval"].contains(&s.as_str()) {
                bail!("[pipeline] stages: unknown stage {s:?}; use collect, export, train, dpo, eval");
            }
        }
        Ok(Stages { config, opts, store, report, wanted, scratch: None })
    }

    fn wants(&self, stage: &str) -> bool {
        self.wanted.iter().any(|s| s == stage)
    }

    pub fn run_all(&mut self) -> anyhow::Result<()> {
        if !self.opts.dry_run {
            for r in runs::reap_stale(self.store)? {
                tracing::warn!("run {} was left running by a process that is gone; marked interrupted", r.id);
            }
        }
        if self.wants("collect") {
            self.collect()?;
        }
        let snapshot = if self.wants("export") { self.export()? } else { self.latest_snapshot()? };
        let Some(snapshot) = snapshot else {
            self.report.step("train", "skipped", "no dataset snapshot: run `brain export` or add the export stage", json!(null));
            return Ok(());
        };
        let mut adapter = None;
        let mut parent = None;
        if self.wants("train") {
            if let Some((run, dir)) = self.train(&snapshot)? {
                parent = Some(run);
                adapter = Some(dir);
            }
        }
        if self.wants("dpo") {
            if let Some(sft_adapter) = adapter.clone() {
                if let Some((run, dir)) = self.dpo(&snapshot, &sft_adapter, parent.clone())? {
                    parent = Some(run);
                    adapter = Some(dir);
                }
            } else {
                self.report.step("dpo", "skipped", "no new SFT adapter in this run", json!(null));
            }
        }
        if let Some(adapter) = adapter {
            if !self.opts.dry_run {
                self.report.adapter = Some(adapter.clone());
            }
            if self.wants("eval") {
                self.eval_and_register(&snapshot, &adapter, parent)?;
            }
        }
        Ok(())
    }

    fn collect(&mut self) -> anyhow::Result<()> {
        let config = self.config;
        if self.opts.dry_run {
            let names: Vec<_> = config.sources.iter().filter(|s| s.enabled).map(|s| s.name.clone()).collect();
            self.report.step("collect", "would-run", format!("would collect from {}", names.join(", ")), json!(null));
            return Ok(());
        }
        let host = crate::plugin::PluginHost::for_config(config).context("starting the plugin runtime")?;
        let mut curation = crate::curation::Curation::new(config, &host)?;
        let opts = CollectOptions { source: None, progress: self.opts.progress };
        let report = collect(config, &host, self.store, &mut curation, &opts)?;
        curation.finish(self.store)?;
        let status = if report.ok() { "done" } else { "partial" };
        let detail = if report.ok() {
            format!("{} new examples from {} sources", report.stored, report.sources.len())
        } else {
            format!("{} new examples; failed: {}", report.stored, report.failed.join(", "))
        };
        if !report.ok() {
            self.report.ok = false;
        }
        self.report.step("collect", status, detail, serde_json::to_value(&report)?);
        Ok(())
    }

    fn export(&mut self) -> anyhow::Result<Option<Snapshot>> {
        if self.opts.dry_run {
            // The export a real run would write, made from the store's in-memory copy into a
            // private temporary folder (removed when the dry run ends), so the later stages
            // decide on the same counts a real run would.
            let scratch = self.scratch.insert(Scratch::new()?);
            let r = crate::export::export(self.store, self.config, Some(&scratch.0))?;
            let more = if self.wants("collect") { " (plus what collect approves)" } else { "" };
            self.report.step("export", "would-run", format!("would write snapshot {} with {} approved examples{more}", r.id, r.examples), json!({"id": r.id, "examples": r.examples, "lines": r.lines}));
            return Ok(Some(Snapshot { id: r.id, dir: r.dir, examples: r.examples }));
        }
        let r = crate::export::export(self.store, self.config, None)?;
        self.report.snapshot = Some(r.id.clone());
        self.report.snapshot_dir = Some(r.dir.clone());
        self.report.step("export", "done", format!("snapshot {} with {} examples at {}", r.id, r.examples, r.dir.display()), serde_json::to_value(&r)?);
        Ok(Some(Snapshot { id: r.id, dir: r.dir, examples: r.examples }))
    }

    fn latest_snapshot(&mut self) -> anyhow::Result<Option<Snapshot>> {
        Ok(self.store.latest_snapshot()?.map(|s| Snapshot { id: s.id, dir: PathBuf::from(s.dir), examples: s.example_count }))
    }

    /// Approved examples in `snapshot` beyond the snapshot the last finished SFT run used.
    fn new_examples(&self, snapshot: &Snapshot) -> anyhow::Result<u64> {
        let last = self.store.runs(&RunFilter { kind: Some("sft".into()), status: Some(RunStatus::Done), limit: 1 })?;
        let Some(prev) = last.first().and_then(|r| r.snapshot_id.clone()) else {
            return Ok(snapshot.examples);
        };
        let prev_count = self.store.snapshots()?.into_iter().find(|s| s.id == prev).map(|s| s.example_count).unwrap_or(0);
        Ok(snapshot.examples.saturating_sub(prev_count))
    }

    fn base_model(&self) -> anyhow::Result<PathBuf> {
        self.config.train.base_model.clone().with_context(|| {
            format!("no base model: set [train] base_model in {} (e.g. `brain model init-tiny models/tiny`)", self.config.path.display())
        })
    }

    fn train(&mut self, snapshot: &Snapshot) -> anyhow::Result<Option<(String, PathBuf)>> {
        // An SFT run killed mid-way is continued from its checkpoint before anything new.
        if let Some(run) = runs::latest_interrupted(self.store, "sft")? {
            let mut args: TrainArgs = serde_json::from_value(run.config.clone()).context("reading the interrupted run's settings")?;
            args.resume = true;
            if self.opts.dry_run {
                self.report.step("train", "would-run", format!("would resume interrupted SFT run {}", run.id), json!(null));
                return Ok(Some((run.id.clone(), args.adapter_path)));
            }
            let lineage = Lineage { resume_run: Some(run.id.clone()), ..Default::default() };
            let (id, r) = self.run_sft(&args, &lineage)?;
            self.report.step("train", "done", format!("resumed run {id}: {} steps, train loss {:?}", r.run.steps, r.run.final_train_loss), serde_json::to_value(&r)?);
            self.report.sft_run = Some(id.clone());
            return Ok(Some((id, args.adapter_path)));
        }
        let new = self.new_examples(snapshot)?;
        let min = self.config.pipeline.min_new_examples as u64;
        if new < min && !self.opts.force {
            self.report.step("train", "skipped", format!("{new} new approved examples, fewer than min_new_examples = {min} (--force trains anyway)"), json!({"new": new, "min": min}));
            return Ok(None);
        }
        let data = snapshot.dir.join("chat");
        if count_lines(&data.join("train.jsonl")) == 0 {
            self.report.step("train", "skipped", format!("{} has no training examples", data.display()), json!(null));
            return Ok(None);
        }
        if self.opts.dry_run {
            self.base_model()?;
            self.report.step("train", "would-run", format!("would train on {new} new approved examples (snapshot {})", snapshot.id), json!({"new": new}));
            return Ok(Some((PLANNED.into(), PathBuf::new())));
        }
        let mut args = crate::cli::train::args_from_config(self.config);
        args.model = self.base_model()?;
        args.data = data;
        args.adapter_path = new_run_dir(&self.config.train.runs_dir, "sft")?;
        let lineage = Lineage { snapshot_id: Some(snapshot.id.clone()), ..Default::default() };
        let (id, r) = self.run_sft(&args, &lineage)?;
        self.report.step(
            "train",
            "done",
            format!(
                "run {id}: {} steps, loss {:.3} → {:.3}, best val {}",
                r.run.steps,
                r.run.first_loss.unwrap_or(f32::NAN),
                r.run.final_train_loss.unwrap_or(f32::NAN),
                r.run.best_val_loss.map_or("-".to_string(), |l| format!("{l:.3}"))
            ),
            serde_json::to_value(&r)?,
        );
        self.report.sft_run = Some(id.clone());
        Ok(Some((id, args.adapter_path)))
    }

    fn run_sft(&mut self, args: &TrainArgs, lineage: &Lineage) -> anyhow::Result<(String, brain_train::TrainReport)> {
        let quiet = self.opts.quiet;
        training::sft(self.store, args, lineage, &mut |p| {
            if !quiet && p.event == brain_train::Event::Train {
                eprintln!("  sft [{}/{}] loss {:.4} {:.0} tok/s", p.step, p.iters, p.train_loss.unwrap_or(f32::NAN), p.tokens_per_second);
            }
        })
    }

    fn dpo(&mut self, snapshot: &Snapshot, sft_adapter: &Path, parent: Option<String>) -> anyhow::Result<Option<(String, PathBuf)>> {
        let data = snapshot.dir.join("preference");
        let pairs = count_lines(&data.join("train.jsonl"));
        let min = self.config.pipeline.min_new_pairs.max(1) as u64;
        if pairs < min {
            self.report.step("dpo", "skipped", format!("{pairs} preference pairs in the snapshot, fewer than min_new_pairs = {min}"), json!({"pairs": pairs}));
            return Ok(None);
        }
        if self.opts.dry_run {
            self.report.step("dpo", "would-run", format!("would run DPO on {pairs} pairs"), json!({"pairs": pairs}));
            return Ok(Some((PLANNED.into(), PathBuf::new())));
        }
        let args = dpo_args_from_config(self.config, self.base_model()?, data, new_run_dir(&self.config.train.runs_dir, "dpo")?, Some(sft_adapter.to_path_buf()))?;
        let lineage = Lineage { snapshot_id: Some(snapshot.id.clone()), parent_id: parent, resume_run: None };
        let quiet = self.opts.quiet;
        let (id, r) = training::dpo(self.store, &args, &lineage, &mut |p| {
            // Only the report events: a run's `done` event repeats the last metrics.
            if let (false, brain_train::Event::Train, Some(m)) = (quiet, p.event, &p.train) {
                eprintln!("  dpo [{}/{}] loss {:.4} margin {:.3} acc {:.2}", p.step, p.iters, m.loss, m.rewards_margins, m.rewards_accuracies);
            }
        })?;
        self.report.step("dpo", "done", format!("run {id}: {} steps on {pairs} pairs; reference: {}", r.run.steps, r.reference_description), serde_json::to_value(&r)?);
        self.report.dpo_run = Some(id.clone());
        Ok(Some((id, args.train.adapter_path)))
    }

    fn eval_and_register(&mut self, snapshot: &Snapshot, adapter: &Path, parent: Option<String>) -> anyhow::Result<()> {
        let data = self.config.eval.data.clone().unwrap_or_else(|| snapshot.dir.join("chat"));
        if count_lines(&data.join("test.jsonl")) == 0 && count_lines(&data) == 0 {
            self.report.step("eval", "skipped", format!("no test examples in {}", data.display()), json!(null));
            return Ok(());
        }
        if self.opts.dry_run {
            let what = if self.config.eval.data.is_none() { format!("the test split of snapshot {}", snapshot.id) } else { data.display().to_string() };
            self.report.step("eval", "would-run", format!("would evaluate the new adapter on {what} and register it"), json!(null));
            let promote = if self.config.pipeline.auto_promote { "would promote it if it beats the active version ([eval] policy)" } else { "would keep it as a candidate ([pipeline] auto_promote = false)" };
            self.report.step("promote", if self.config.pipeline.auto_promote { "would-run" } else { "skipped" }, promote, json!(null));
            if let (true, Some(name)) = (self.config.pipeline.auto_promote, &self.config.pipeline.ollama_model) {
                let detail = format!("would ship it to Ollama as {name} if promoted (fused, f16 GGUF, checked TEMPLATE)");
                self.report.step("ollama", "would-run", detail, json!(null));
            }
            return Ok(());
        }
        let base = self.base_model()?;
        let mut args = eval_args_from_config(self.config, base.clone(), data);
        args.adapter_path = vec![adapter.to_path_buf()];
        let lineage = Lineage { snapshot_id: Some(snapshot.id.clone()), parent_id: parent.clone(), resume_run: None };
        let (eval_id, cand) = training::eval(self.store, &args, &lineage, None)?;
        self.report.eval_run = Some(eval_id);
        let cand_summary = eval_summary(&cand);

        // The active version, judged on the same test set, so the comparison is fair.
        let active_summary = match models::active(self.store)? {
            Some(active) => match active.adapter.as_deref().map(PathBuf::from) {
                Some(a) if a.exists() => {
                    let mut a_args = args.clone();
                    a_args.adapter_path = vec![a];
                    let (_, r) = training::eval(self.store, &a_args, &Lineage { snapshot_id: Some(snapshot.id.clone()), ..Default::default() }, None)?;
                    Some(eval_summary(&r))
                }
                _ => Some(active.eval.clone()),
            },
            None => None,
        };
        self.report.step(
            "eval",
            "done",
            format!("test loss {:.4} (ppl {:.2}), stop rate {:.2}, repetition {:.3}", cand.test_loss, cand.perplexity, cand.stop_rate, cand.repetition_rate),
            json!({"candidate": cand_summary, "active": active_summary}),
        );

        let record = models::register(self.store, parent.as_deref(), adapter, Some(&base), &cand_summary)?;
        self.report.model_version = Some(record.version.clone());
        if self.config.pipeline.auto_promote {
            let policy = PromotionPolicy::from_config(&self.config.eval)?;
            let outcome = models::auto_promote(self.store, &record.version, &policy, active_summary.as_ref())?;
            self.report.promoted = outcome.promoted;
            let status = if outcome.promoted { "done" } else { "skipped" };
            self.report.step("promote", status, format!("{}: {}", record.version, outcome.decision.reason), serde_json::to_value(&outcome)?);
            if outcome.promoted {
                self.ship_to_ollama(adapter, &base);
            }
        } else {
            self.report.step("promote", "skipped", format!("{} registered as candidate ([pipeline] auto_promote = false)", record.version), json!(null));
        }
        Ok(())
    }
}

/// The id of a run or adapter a dry run plans but does not make.
const PLANNED: &str = "(planned)";

/// A dry run's private temporary folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("brain-dry-run-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Stages<'_> {
    /// `[pipeline] ollama_model`: the promoted version goes to Ollama as `brain export ollama
    /// NAME --gguf` would ship it (fused, one f16 GGUF file, the checked TEMPLATE). A failure is
    /// this step's alone: the version stays promoted and the run reports it as not ok.
    fn ship_to_ollama(&mut self, adapter: &Path, base: &Path) {
        let Some(name) = self.config.pipeline.ollama_model.clone() else { return };
        let opts = OllamaOptions {
            name: name.clone(),
            source: Source::FuseFirst { adapter: adapter.to_path_buf(), base: base.to_path_buf() },
            out_dir: self.config.dir.join("ollama").join(&name),
            system_prompt: self.config.pipeline.system_prompt.clone(),
            temperature: None,
            quantize: None,
            create: true,
            gguf: Some(GgufType::F16),
            safetensors: false,
        };
        match export_ollama(&opts) {
            Ok(r) => {
                let detail = if r.created { format!("created Ollama model {name}") } else { format!("Ollama not found; run: {}", r.command) };
                self.report.step("ollama", "done", detail, json!({"modelfile": r.modelfile, "created": r.created, "command": r.command, "warnings": r.warnings}));
            }
            Err(e) => {
                self.report.ok = false;
                self.report.step("ollama", "failed", format!("{e:#}"), json!(null));
            }
        }
    }
}

struct Snapshot {
    id: String,
    dir: PathBuf,
    examples: u64,
}

/// DPO settings from `[dpo]` (falling back to `[train]`), starting from `reference` (the SFT
/// adapter, which is also the frozen reference).
pub fn dpo_args_from_config(config: &Config, model: PathBuf, data: PathBuf, adapter_path: PathBuf, reference: Option<PathBuf>) -> anyhow::Result<DpoArgs> {
    let d = &config.dpo;
    let mut train = crate::cli::train::args_from_config(config);
    train.model = d.base_model.clone().unwrap_or(model);
    train.data = data;
    train.adapter_path = adapter_path;
    train.iters = d.iters as usize;
    train.batch_size = d.batch_size.max(1) as usize;
    train.learning_rate = d.learning_rate as f32;
    train.num_layers = d.num_layers as i32;
    train.max_seq_length = d.max_seq_length as usize;
    train.steps_per_eval = d.steps_per_eval.max(1) as usize;
    train.seed = d.seed;
    train.lora.rank = d.lora.rank as usize;
    train.lora.scale = d.lora.scale as f32;
    train.lora.dropout = d.lora.dropout as f32;
    let loss_type = LossType::parse(&d.loss_type)
        .with_context(|| format!("[dpo] loss_type = {:?}: use sigmoid, ipo, hinge or robust", d.loss_type))?;
    Ok(DpoArgs {
        train,
        beta: d.beta as f32,
        loss_type,
        reference: reference.or_else(|| d.reference_adapter.clone()),
        ..DpoArgs::default()
    })
}

/// Evaluation settings from `[eval]`.
pub fn eval_args_from_config(config: &Config, model: PathBuf, data: PathBuf) -> EvalArgs {
    let e = &config.eval;
    EvalArgs {
        model,
        data,
        max_examples: e.max_examples as usize,
        max_tokens: e.max_tokens.max(1) as usize,
        max_seq_length: config.train.max_seq_length as usize,
        ..EvalArgs::default()
    }
}
