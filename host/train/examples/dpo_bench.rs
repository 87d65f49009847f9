//! DPO vs SFT step cost on the same pair tokens, and an end-to-end DPO run.
//!
//! `cargo run --release -p brain-train --example dpo_bench -- --model DIR [--pairs 4 --steps 10]`
//!   Builds one batch of `pairs` synthetic preference pairs (2·pairs rows: chosen, rejected), LoRA
//!   rank 8 on q/k/v/o of all layers, and times, alternating, with the same rows and loss mask:
//!   an SFT step (masked NLL, value_and_grad, AdamW) and a DPO step (sigmoid loss on the cached
//!   reference, value_and_grad, AdamW), plus a DPO step that recomputes the reference every step
//!   (no cache; what a trainer without the cache pays). Prints one JSON object.
//!
//! `… --model DIR --data DIR --iters N` writes nothing and runs `dpo()` end to end on
//!   DIR/train.jsonl (pairs), printing the DpoReport as JSON with tokens/s = total trained tokens
//!   over total time (reference log-prob pass + every update), and peak memory.
//!
//! `… --model DIR --write-data DIR --n 64` writes synthetic pairs (train/valid) for both tools.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use serde_json::json;

use brain_train::dpo::{self, pair_forward, reference_logps, DpoArgs, DpoLoss, Pair, PairBatch};
use brain_train::loss::nll_sum;
use brain_train::models::{Mode, Model};
use brain_train::optim::AdamW;
use brain_train::tokenizer::Tokenizer;
use brain_train::{LoraArgs, TrainArgs};
use mlx::loss::CePath;
use mlx::Array;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 4)]
    pairs: usize,
    /// Words per response (prompt: a third of it).
    #[arg(long, default_value_t = 60)]
    words: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// End-to-end mode: a pairs data directory.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    iters: usize,
    #[arg(long, default_value_t = 1e-5)]
    learning_rate: f32,
    #[arg(long, default_value_t = 2048)]
    max_seq_length: usize,
    /// Write synthetic pairs here (train.jsonl, valid.jsonl) and exit.
    #[arg(long)]
    write_data: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// LoRA on all seven linear layers of each block (mlx-lm-lora's only choice) instead of q/k/v/o.
    #[arg(long)]
    all_linear: bool,
}

const WORDS: &str = "the a model token loss train data value function return error test memory batch layer weight \
gradient step rate cosine warmup adapter rank scale matrix vector sum mean log exp we you it is was will can should \
code file line commit branch merge review quality";

fn text(seed: u64, n: usize) -> String {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = brain_train::rng::Rng::new(seed);
    let s: Vec<&str> = (0..n).map(|_| words[rng.below(words.len())]).collect();
    s.join(" ") + "."
}

fn pair_json(i: usize, words: usize) -> serde_json::Value {
    let i = i as u64 * 3;
    json!({"prompt": text(i, words / 3), "chosen": text(i + 1, words), "rejected": text(i + 2, words)})
}

fn lora(all_linear: bool) -> LoraArgs {
    let mut l = LoraArgs { rank: 8, scale: 20.0, dropout: 0.0, ..Default::default() };
    if all_linear {
        l.keys = brain_train::models::LINEAR_KEYS.iter().map(|k| k.to_string()).collect();
    }
    l
}

/// CPU seconds (all threads) of this process so far, from /proc (Linux; 0 elsewhere).
fn cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    ticks / 100.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if let Some(dir) = &a.write_data {
        std::fs::create_dir_all(dir)?;
        for (name, n, off) in [("train", a.n, 0), ("valid", (a.n / 8).max(2), 100_000)] {
            let lines: String = (0..n).map(|i| pair_json(i + off, a.words).to_string() + "\n").collect();
            std::fs::write(dir.join(format!("{name}.jsonl")), lines)?;
        }
        return Ok(());
    }
    if let Some(data) = &a.data {
        let args = DpoArgs {
            train: TrainArgs {
                model: a.model.clone(),
                data: data.clone(),
                adapter_path: std::env::temp_dir().join(format!("dpo-bench-{}", std::process::id())),
                iters: a.iters,
                batch_size: a.pairs,
                learning_rate: a.learning_rate,
                num_layers: -1,
                lora: lora(a.all_linear),
                max_seq_length: a.max_seq_length,
                steps_per_report: 1,
                steps_per_eval: 1_000_000,
                steps_per_save: 1_000_000,
                lr_schedule: brain_train::optim::ScheduleKind::Constant,
                ..Default::default()
            },
            ..Default::default()
        };
        let t0 = Instant::now();
        let r = dpo::dpo(&args, &mut |_| {})?;
        let wall = t0.elapsed().as_secs_f64();
        // Total trained tokens over total time, the reference pass included (it is part of what
        // a DPO run costs; mlx-lm-lora pays it inside every step), every step counted.
        let seconds = r.reference_seconds as f64 + r.run.train_seconds as f64;
        let tps = r.run.trained_tokens as f64 / seconds;
        let step_s = seconds / r.run.steps.max(1) as f64;
        let _ = std::fs::remove_dir_all(&args.train.adapter_path);
        println!(
            "{}",
            json!({"tool": "sam-brain", "tokens_per_second": tps, "step_s": step_s, "peak_memory_gb": r.run.peak_memory_gb, "first_loss": r.run.first_loss,
                   "trained_tokens": r.run.trained_tokens, "measured_seconds": seconds,
                   "reference_seconds": r.reference_seconds, "wall_seconds": wall, "steps": r.run.steps, "report": r})
        );
        return Ok(());
    }

    let tok = Tokenizer::load(&a.model)?;
    let mut model = Model::load(&a.model, None)?;
    let l = lora(a.all_linear);
    model.apply_lora(-1, &l.keys, l.rank, l.scale, l.dropout, 0)?;
    let pairs: Vec<Pair> = (0..a.pairs).map(|i| dpo::pairs::parse_pair(&pair_json(i, a.words), &tok).map_err(anyhow::Error::msg)).collect::<Result<_, _>>()?;
    let path = CePath::Auto;
    let t = Instant::now();
    let reference = reference_logps(&model, &pairs, a.pairs, tok.pad_id, path)?;
    let reference_s = t.elapsed().as_secs_f64();
    let idx: Vec<usize> = (0..a.pairs).collect();
    let pb = PairBatch::new(&pairs, &idx, &reference, tok.pad_id, 1)?;
    let cfg = DpoLoss::default();
    let trainable: Vec<Array> = model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
    let refs: Vec<&Array> = trainable.iter().collect();
    let argnums: Vec<i32> = (0..refs.len() as i32).collect();
    let denom = pb.batch.tokens as f32;
    let mut opt_sft = AdamW::new(0.0);
    let mut opt_dpo = AdamW::new(0.0);
    let mut opt_nocache = AdamW::new(0.0);
    let (mut sft_t, mut dpo_t, mut nocache_t) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sft_cpu, mut dpo_cpu, mut nocache_cpu) = (0f64, 0f64, 0f64);
    mlx::memory::reset_peak_memory()?;
    for i in 0..a.warmup + a.steps {
        // SFT on the same rows and mask.
        let c0 = cpu_s();
        let t = Instant::now();
        let (v, g) = mlx::value_and_grad(
            |xs: &[Array]| Ok(vec![nll_sum(&model, &model.with_trainable(xs), &pb.batch, Mode::default(), path)?.div(denom)?]),
            &refs,
            &argnums,
        )?;
        let new = opt_sft.update(&trainable, &g, 1e-5)?;
        mlx::eval(new.iter().chain(opt_sft.state()).chain(v.iter()))?;
        let sft = t.elapsed().as_secs_f64();
        let c1 = cpu_s();
        // DPO with the cached reference.
        let t = Instant::now();
        let (v, g) = mlx::value_and_grad(|xs: &[Array]| pair_forward(&model, &model.with_trainable(xs), &pb, Mode::default(), path, &cfg, 0.0), &refs, &argnums)?;
        let new = opt_dpo.update(&trainable, &g, 1e-5)?;
        mlx::eval(new.iter().chain(opt_dpo.state()).chain(v.iter()))?;
        let _ = v[1].to_vec::<f32>()?; // the per-pair metrics reach the host, as in training
        let d = t.elapsed().as_secs_f64();
        let c2 = cpu_s();
        // DPO recomputing the reference every step (no cache).
        let t = Instant::now();
        let r = reference_logps(&model, &pairs, a.pairs, tok.pad_id, path)?;
        let pb2 = PairBatch::new(&pairs, &idx, &r, tok.pad_id, 1)?;
        let (v, g) = mlx::value_and_grad(|xs: &[Array]| pair_forward(&model, &model.with_trainable(xs), &pb2, Mode::default(), path, &cfg, 0.0), &refs, &argnums)?;
        let new = opt_nocache.update(&trainable, &g, 1e-5)?;
        mlx::eval(new.iter().chain(opt_nocache.state()).chain(v.iter()))?;
        let nc = t.elapsed().as_secs_f64();
        let c3 = cpu_s();
        if i >= a.warmup {
            (sft_cpu, dpo_cpu, nocache_cpu) = (sft_cpu + c1 - c0, dpo_cpu + c2 - c1, nocache_cpu + c3 - c2);
            sft_t.push(sft);
            dpo_t.push(d);
            nocache_t.push(nc);
        }
    }
    let rows = 2 * a.pairs;
    let (s, d, n) = (median(&mut sft_t), median(&mut dpo_t), median(&mut nocache_t));
    println!(
        "{}",
        json!({
            "model": a.model, "vocab": model.config.vocab_size, "hidden": model.config.hidden_size, "layers": model.num_layers(),
            "pairs": a.pairs, "rows": rows, "row_len": pb.batch.inputs.dim(1), "trained_tokens": pb.batch.tokens,
            "sft_step_s": s, "dpo_step_s": d, "dpo_nocache_step_s": n, "dpo_over_sft": d / s, "nocache_over_sft": n / s,
            "sft_cpu_s": sft_cpu / a.steps as f64, "dpo_cpu_s": dpo_cpu / a.steps as f64, "nocache_cpu_s": nocache_cpu / a.steps as f64,
            "dpo_over_sft_cpu": dpo_cpu / sft_cpu.max(1e-9), "nocache_over_sft_cpu": nocache_cpu / sft_cpu.max(1e-9),
            "sft_tokens_per_second": pb.batch.tokens as f64 / s, "dpo_tokens_per_second": pb.batch.tokens as f64 / d,
            "reference_once_s": reference_s, "peak_memory_gb": mlx::memory::peak_memory()? as f64 / 1e9,
            "fused_ce_blas": mlx::loss::fused_kernel_has_blas().unwrap_or(false),
        })
    );
    Ok(())
}
