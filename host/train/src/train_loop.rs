//! The training loop shared by SFT ([`crate::trainer::train`]) and DPO ([`crate::dpo::dpo`]), in
//! the manner of mlx-lm's `trainer.train`: one loop owns what every run does — step scheduling
//! (`iters` or `epochs`), gradient accumulation and clipping, the learning-rate schedule,
//! validation cadence with best-adapter keeping and early stopping, checkpoints and exact resume,
//! NaN/inf stop, cancel, the progress callback and `metrics.jsonl` — and an `Objective` says
//! what differs: the batches, the loss of a batch, the validation metric and the progress records.
//!
//! The numbers are a pure function of the arguments and the data: dropout is seeded from (seed,
//! update, batch within the update), the batcher's position is checkpointed with the optimizer
//! state, so a resumed run gives the losses of an uninterrupted one.
//!
//! The contract with a kind of training is in `train_loop/objective.rs`, checkpoints in
//! `train_loop/checkpoint.rs`.

mod checkpoint;
mod objective;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use mlx::Array;

use crate::adapters::{self, AdapterConfig, ADAPTER_FILE};
use crate::data::Batcher;
use crate::error::{io, Error, Result};
use crate::models::{Mode, Model};
use crate::optim::{clip_grad_norm, AdamW, Schedule};
use crate::trainer::TrainArgs;

use checkpoint::{Settings, State};
pub use objective::{Event, StopReason};
pub(crate) use objective::{Moment, Objective, Record, Window};
pub use objective::RunSummary;

/// MLX's peak allocated memory so far, GB.
pub(crate) fn peak_gb() -> f32 {
    mlx::memory::peak_memory().unwrap_or(0) as f32 / 1e9
}

/// Process-wide MLX settings of a run: the memory limit and the random seed (set before the
/// model is built, so initialization is reproducible).
pub(crate) fn init_mlx(args: &TrainArgs) -> Result<()> {
    if let Some(limit) = args.memory_limit {
        mlx::memory::set_memory_limit(limit)?;
    }
    mlx::random::seed(args.seed)?;
    Ok(())
}

/// Updates of the run: `iters`, or `epochs` passes over the batcher's data.
fn total_iters(args: &TrainArgs, batcher: &Batcher) -> usize {
    match args.epochs {
        Some(e) => (e * batcher.batches_per_epoch()).div_ceil(args.grad_accumulation_steps).max(1),
        None => args.iters,
    }
}

/// Dropout seed of batch `k` of update `step`: fixed by the arguments, so resume repeats it.
fn dropout_seed(seed: u64, step: usize, k: usize) -> u64 {
    seed.wrapping_mul(0x1_0000_0001).wrapping_add((step * 64 + k) as u64)
}

/// [`Objective::loss`]'s values and its gradient w.r.t. `trainable`, through `compiled`: the
/// trainable arrays, the batch's and the dropout key (new masks every update) are the compiled
/// function's inputs, everything else (the frozen weights, the model's structure) is captured
/// and stays fixed.
fn compiled_loss_and_grad<O: Objective>(
    compiled: &mlx::Compiled,
    model: &Model,
    obj: &O,
    trainable: &[&Array],
    batch: &[Array],
    dropout_key: Option<&Array>,
) -> mlx::Result<(Vec<Array>, Vec<Array>)> {
    let n = trainable.len();
    let inputs: Vec<&Array> = trainable.iter().copied().chain(batch.iter()).chain(dropout_key).collect();
    let mut outputs = compiled.call(
        |xs: &[Array]| {
            let (t, rest) = xs.split_at(n);
            let (batch, key) = rest.split_at(rest.len() - usize::from(dropout_key.is_some()));
            let mode = Mode { dropout_key: key.first() };
            let refs: Vec<&Array> = t.iter().collect();
            let argnums: Vec<i32> = (0..n as i32).collect();
            let (vals, grads) =
                mlx::value_and_grad(|p: &[Array]| obj.loss_from_inputs(model, &model.with_trainable(p), batch, mode), &refs, &argnums)?;
            Ok(vals.into_iter().chain(grads).collect())
        },
        &inputs,
    )?;
    let grads = outputs.split_off(outputs.len() - n);
    Ok((outputs, grads))
}

/// One finished update.
struct Update {
    loss: f32,
    tokens: usize,
    grad_norm: Option<f32>,
    outputs: Vec<Vec<Array>>,
}

/// The loop's mutable state.
struct Trainer<'a, O: Objective> {
    args: &'a TrainArgs,
    obj: &'a mut O,
    model: &'a mut Model,
    opt: AdamW,
    batcher: Batcher,
    schedule: Schedule,
    state: State,
    config: &'a AdapterConfig,
    /// metrics.jsonl (rank 0 only: the other ranks write nothing).
    metrics: Option<std::fs::File>,
    world: crate::distributed::World,
    last_checkpoint: Option<PathBuf>,
    final_adapter: PathBuf,
    start: Instant,
    progress: &'a mut dyn FnMut(&O::Progress),
    /// The compiled loss and gradient (`compile = true`), and the batches that went through it.
    compiled: Option<mlx::Compiled>,
    compiled_batches: usize,
}

/// Train `model` (its trainable parameters) on `obj` with `args`; `config` is the
/// adapter_config.json written to the run directory and every checkpoint. `progress` is called
/// on every report, validation, checkpoint and at the end (each also a line of metrics.jsonl).
pub(crate) fn run<O: Objective>(
    args: &TrainArgs,
    model: &mut Model,
    batcher: Batcher,
    config: &AdapterConfig,
    obj: &mut O,
    progress: &mut dyn FnMut(&O::Progress),
) -> Result<RunSummary> {
    let dir = &args.adapter_path;
    let iters = total_iters(args, &batcher);
    let schedule = Schedule { kind: args.lr_schedule, base_lr: args.learning_rate, warmup: args.warmup, total: iters, min_lr: args.min_learning_rate };
    let world = crate::distributed::world()?;
    let metrics = if world.is_main() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        config.write(dir)?;
        let mp = dir.join("metrics.jsonl");
        Some(std::fs::OpenOptions::new().create(true).append(true).open(&mp).map_err(io(&mp))?)
    } else {
        None
    };
    let batcher_len = batcher.batches_per_epoch();
    let mut t = Trainer {
        args,
        obj,
        model,
        opt: AdamW::new(args.weight_decay),
        batcher,
        schedule,
        state: State::new(iters, Settings::of(args, batcher_len)),
        config,
        metrics,
        world,
        last_checkpoint: None,
        final_adapter: dir.join(ADAPTER_FILE),
        start: Instant::now(),
        progress,
        compiled: None,
        compiled_batches: 0,
    };
    if args.resume {
        let ck = checkpoint::newest(dir)?;
        t.resume_from(&ck)?;
        tracing::info!("resuming from {} (step {})", ck.display(), t.state.step);
    }
    if args.compiles()? {
        // The compiled graph captures the frozen weights: with values, not their loading.
        mlx::eval(t.model.params.values.iter())?;
        t.compiled = Some(mlx::Compiled::new());
        t.opt.compiled = Some(mlx::Compiled::new());
    }
    mlx::memory::reset_peak_memory()?;
    t.train()
}

impl<O: Objective> Trainer<'_, O> {
    /// Validation at the start (of a fresh run), every `steps_per_eval` updates and at the end;
    /// a report every `steps_per_report`; a checkpoint every `steps_per_save`, on cancel and on
    /// early stop.
    fn train(mut self) -> Result<RunSummary> {
        let args = self.args;
        let iters = self.state.iters;
        if self.state.step == 0 {
            self.validate()?;
        }
        let mut stop = StopReason::Completed;
        let (mut first_loss, mut final_train_loss) = (None, None);
        // Since the last report, and the whole run.
        let (mut window, mut total) = (Window::default(), Window::default());
        while self.state.step < iters {
            let t0 = Instant::now();
            let step = self.state.step + 1;
            let u = self.update(step)?;
            self.state.step = step;
            self.state.position = self.batcher.position;
            self.state.trained_tokens += u.tokens;
            first_loss.get_or_insert(u.loss);
            final_train_loss = Some(u.loss);
            let dt = t0.elapsed().as_secs_f64();
            self.obj.observe(&u.outputs)?;
            window.add(u.loss, u.grad_norm, u.tokens, dt);
            total.add(u.loss, u.grad_norm, u.tokens, dt);

            let lr = self.schedule.lr(step - 1);
            if step.is_multiple_of(args.steps_per_report.max(1)) || step == iters {
                self.emit(Event::Train, lr, Record::Train(&window));
                window = Window::default();
            }
            let cancelled = args.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
            let mut early = false;
            if step.is_multiple_of(args.steps_per_eval.max(1)) || step == iters {
                early = self.validate()?;
            }
            if step.is_multiple_of(args.steps_per_save.max(1)) || cancelled || early {
                let ck = self.save_checkpoint()?;
                self.emit(Event::Save, lr, Record::Save(&ck));
            }
            if early {
                stop = StopReason::EarlyStopped;
                break;
            }
            if cancelled {
                stop = StopReason::Cancelled;
                break;
            }
        }
        if self.world.is_main() && (!self.obj.has_validation() || !self.final_adapter.exists()) {
            adapters::save_weights(self.model, &self.final_adapter)?;
        }
        let outcome = RunSummary {
            steps: self.state.step,
            stop,
            first_loss,
            final_train_loss,
            best_val_loss: self.state.best_val_loss,
            best_step: self.state.best_step,
            trained_tokens: self.state.trained_tokens,
            train_seconds: total.seconds as f32,
            tokens_per_second: total.tokens_per_second(),
            peak_memory_gb: peak_gb(),
            adapter_file: self.final_adapter.clone(),
            trainable_parameters: self.model.trainable_params().iter().map(|(_, a)| a.size()).sum(),
            compiled_batches: self.compiled_batches,
            bf16_matrices: self.model.bf16_matrices(),
        };
        self.emit(Event::Done, self.schedule.lr(self.state.step.saturating_sub(1)), Record::Done(&outcome));
        Ok(outcome)
    }

    /// One optimizer update: the loss and gradients of `grad_accumulation_steps` batches summed,
    /// clipped, applied by AdamW. A non-finite loss stops the run before the weights change.
    fn update(&mut self, step: usize) -> Result<Update> {
        let args = self.args;
        let batches = self.obj.draw(&mut self.batcher, args.grad_accumulation_steps)?;
        let tokens: usize = batches.iter().map(|b| self.obj.tokens(b)).sum();
        let trainable: Vec<Array> = self.model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
        let refs: Vec<&Array> = trainable.iter().collect();
        let argnums: Vec<i32> = (0..refs.len() as i32).collect();
        let mut grads: Option<Vec<Array>> = None;
        let mut loss_sum: Option<Array> = None;
        let mut outputs = Vec::with_capacity(batches.len());
        for (k, b) in batches.iter().enumerate() {
            // With dropout, each batch's own PRNG key (from the seed, the update and the batch, so
            // a resumed run draws the same masks).
            let key = if args.uses_dropout() { Some(mlx::random::key(dropout_seed(args.seed, step, k))?) } else { None };
            let mode = Mode { dropout_key: key.as_ref() };
            let (model, obj) = (&*self.model, &*self.obj);
            let compiled = match &self.compiled {
                Some(c) => obj.batch_inputs(b)?.map(|inputs| (c, inputs)),
                None => None,
            };
            let (vals, g) = match compiled {
                Some((c, inputs)) => {
                    self.compiled_batches += 1;
                    compiled_loss_and_grad(c, model, obj, &refs, &inputs, key.as_ref())?
                }
                None => mlx::value_and_grad(|xs: &[Array]| obj.loss(model, &model.with_trainable(xs), b, mode), &refs, &argnums)?,
            };
            loss_sum = Some(match loss_sum {
                Some(s) => s.add(&vals[0])?,
                None => vals[0].clone(),
            });
            grads = Some(match grads {
                Some(acc) => acc.iter().zip(&g).map(|(a, b)| a.add(b)).collect::<mlx::Result<_>>()?,
                None => g,
            });
            if batches.len() > 1 {
                // Bound the graph (and memory) to one batch at a time.
                mlx::eval(grads.iter().flatten().chain(loss_sum.iter()).chain(vals.iter()))?;
            }
            outputs.push(vals);
        }
        let mut grads = grads.expect("at least one batch");
        let mut loss_arr = loss_sum.expect("at least one batch");
        let mut tokens = tokens;
        if self.world.size > 1 {
            // Each rank's shares of the global loss: their sums are the one-process gradients.
            grads.push(loss_arr);
            grads = self.world.all_sum(grads)?;
            loss_arr = grads.pop().expect("the loss was pushed");
            tokens = self.world.sum_count(tokens)?;
        }
        let norm = match (args.max_grad_norm, self.obj.wants_grad_norm()) {
            (None, false) => None,
            (max, _) => Some(clip_grad_norm(&mut grads, max.unwrap_or(f32::INFINITY))?),
        };
        // MLX's count of updates done before this one (see `Schedule::lr`).
        let lr = self.schedule.lr(step - 1);
        let new = self.opt.update(&trainable, &grads, lr)?;
        mlx::eval(new.iter().chain(self.opt.state()).chain([&loss_arr]).chain(norm.iter()).chain(outputs.iter().flatten()))?;
        let loss = loss_arr.item::<f32>()?;
        if !loss.is_finite() {
            let last_good = self.last_checkpoint.clone();
            let error = Error::NonFinite { step, loss, last_good: last_good.as_ref().map_or("none (no checkpoint was saved yet)".into(), |p| p.display().to_string()) };
            self.emit(Event::Done, lr, Record::NonFinite { loss, error: &error, last_good: last_good.as_deref() });
            return Err(error);
        }
        self.model.set_trainable(new);
        let grad_norm = norm.map(|n| n.item::<f32>()).transpose()?;
        Ok(Update { loss, tokens, grad_norm, outputs })
    }

    /// Validate; keep the adapter when it is the best so far. Returns whether patience ran out.
    fn validate(&mut self) -> Result<bool> {
        let Some(loss) = self.obj.validate(self.model)? else { return Ok(false) };
        if self.state.best_val_loss.is_none_or(|b| loss < b) {
            self.state.best_val_loss = Some(loss);
            self.state.best_step = Some(self.state.step);
            self.state.bad_evals = 0;
            if self.world.is_main() {
                adapters::save_weights(self.model, &self.final_adapter)?;
            }
        } else {
            self.state.bad_evals += 1;
        }
        self.emit(Event::Val, self.schedule.lr(self.state.step.saturating_sub(1)), Record::Val(loss));
        Ok(self.args.patience.is_some_and(|pat| self.state.bad_evals >= pat))
    }

    /// The objective's record of `record` to the callback and metrics.jsonl.
    fn emit(&mut self, event: Event, learning_rate: f32, record: Record<'_>) {
        use std::io::Write;
        let at = Moment {
            event,
            step: self.state.step,
            iters: self.state.iters,
            learning_rate,
            trained_tokens: self.state.trained_tokens,
            elapsed_s: self.start.elapsed().as_secs_f32(),
        };
        let p = self.obj.progress(&at, record);
        if let (Some(metrics), Ok(line)) = (&mut self.metrics, serde_json::to_string(&p)) {
            // A full disk must not stop training; the callback still gets the event.
            let _ = writeln!(metrics, "{line}");
        }
        (self.progress)(&p);
    }

    /// A checkpoint of the current state (see [`checkpoint`]).
    fn save_checkpoint(&mut self) -> Result<PathBuf> {
        if !self.world.is_main() {
            // Rank 0 writes it; the path is where it is (a shared folder, for resume on every rank).
            let dir = checkpoint::path(&self.args.adapter_path, self.state.step);
            self.last_checkpoint = Some(dir.clone());
            return Ok(dir);
        }
        let dir = checkpoint::save(&self.args.adapter_path, &self.state, self.model, &self.opt, self.config)?;
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    /// Weights, optimizer state and data position of checkpoint `dir` (the run's `iters` stays
    /// this run's).
    fn resume_from(&mut self, dir: &Path) -> Result<()> {
        let state = checkpoint::load(dir, self.model, &mut self.opt)?;
        let now = self.state.settings.as_ref().expect("a new state has settings");
        match &state.settings {
            Some(saved) => now.check_resume(saved, dir)?,
            // An older checkpoint: at least never index past the data.
            None if state.position.index >= now.batches_per_epoch => {
                return Err(Error::Args(format!(
                    "--resume: checkpoint {} is at batch {} of an epoch but the data now has {} batches per epoch \
                     (batch size or data changed); start a new run in another --adapter-path",
                    dir.display(),
                    state.position.index,
                    now.batches_per_epoch
                )))
            }
            None => {}
        }
        self.batcher.position = state.position;
        self.state = State { iters: self.state.iters, settings: self.state.settings.take(), ..state };
        self.last_checkpoint = Some(dir.to_path_buf());
        Ok(())
    }
}
