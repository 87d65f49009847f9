//! Drive the trainer until the `brain` CLI wires it:
//! `cargo run --release -p brain-train --example train -- --model DIR --data DIR [--iters N ...]`
//! Prints progress lines, then the TrainReport as JSON (with --test: the TestReport).

mod common;

use std::path::PathBuf;

use clap::Parser;

use brain_train::{FineTuneType, TrainArgs};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "adapters")]
    adapter_path: PathBuf,
    #[arg(long, default_value_t = 100)]
    iters: usize,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-5)]
    learning_rate: f32,
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    num_layers: i32,
    #[arg(long, default_value_t = 8)]
    rank: usize,
    #[arg(long, default_value_t = 20.0)]
    scale: f32,
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Comma-separated LoRA keys.
    #[arg(long, default_value = "self_attn.q_proj,self_attn.k_proj,self_attn.v_proj,self_attn.o_proj")]
    keys: String,
    #[arg(long, default_value_t = 2048)]
    max_seq_length: usize,
    #[arg(long, default_value_t = 10)]
    steps_per_report: usize,
    #[arg(long, default_value_t = 200)]
    steps_per_eval: usize,
    #[arg(long, default_value_t = 25)]
    val_batches: usize,
    #[arg(long, default_value_t = 100)]
    save_every: usize,
    #[arg(long, default_value_t = 1)]
    grad_accumulation_steps: usize,
    #[arg(long)]
    grad_checkpoint: bool,
    #[arg(long)]
    full: bool,
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value = "constant")]
    lr_schedule: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    loss: String,
    #[arg(long)]
    dtype: Option<String>,
    /// Compile each update (MLX's compile, as mlx-lm does); the default on a GPU.
    #[arg(long, conflicts_with = "no_compile")]
    compile: bool,
    /// On the CPU, multiply the frozen weights in bf16 (AVX-512 BF16); the default for models
    /// stored in bf16.
    #[arg(long, conflicts_with = "no_bf16_matmul")]
    bf16_matmul: bool,
    /// Multiply in f32, even a model stored in bf16.
    #[arg(long)]
    no_bf16_matmul: bool,
    /// Do not compile, even on a GPU.
    #[arg(long)]
    no_compile: bool,
    /// Evaluate test.jsonl instead of training.
    #[arg(long)]
    test: bool,
    /// With --test: evaluate the bare model.
    #[arg(long)]
    no_adapter: bool,
    /// Print one benchmark JSON object (first-step loss, validation loss before training,
    /// tokens/s over the steps after the first N, peak memory) instead of the report.
    #[arg(long)]
    bench_skip: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    mlx::heap::keep_freed_memory(); // as `brain` does, before any thread starts
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let a = Args::parse();
    let args = TrainArgs {
        model: a.model,
        data: a.data,
        adapter_path: a.adapter_path,
        fine_tune_type: if a.full { FineTuneType::Full } else { FineTuneType::Lora },
        iters: a.iters,
        batch_size: a.batch_size,
        learning_rate: a.learning_rate,
        lr_schedule: serde_json::from_value(serde_json::json!(a.lr_schedule))?,
        num_layers: a.num_layers,
        max_seq_length: a.max_seq_length,
        grad_accumulation_steps: a.grad_accumulation_steps,
        grad_checkpoint: a.grad_checkpoint,
        seed: a.seed,
        lora: brain_train::LoraArgs { rank: a.rank, scale: a.scale, dropout: a.dropout, keys: a.keys.split(',').map(String::from).collect() },
        steps_per_report: a.steps_per_report,
        steps_per_eval: a.steps_per_eval,
        val_batches: a.val_batches,
        steps_per_save: a.save_every,
        resume: a.resume,
        quick: a.quick,
        loss: a.loss,
        dtype: a.dtype,
        compile: (a.compile || a.no_compile).then_some(a.compile),
        bf16_matmul: (a.bf16_matmul || a.no_bf16_matmul).then_some(a.bf16_matmul),
        ..Default::default()
    };
    if a.test {
        let mut t = args.test_args();
        if a.no_adapter {
            t.adapter_path = None;
        }
        let r = brain_train::evaluate_test(&t)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let mut steps: Vec<(usize, f32)> = Vec::new();
    let mut first_val = None;
    let mut cpu_from: Option<f64> = None;
    let skip = a.bench_skip.unwrap_or(0);
    let t0 = std::time::Instant::now();
    let report = brain_train::train(&args, &mut |p| {
        use brain_train::Event::*;
        if p.event == Train {
            steps.push((p.step, p.tokens_per_second));
            if p.step == skip {
                cpu_from = Some(common::cpu_seconds());
            }
        }
        if p.event == Val && first_val.is_none() {
            first_val = p.val_loss;
        }
        match p.event {
            Train => eprintln!(
                "Iter {}: train loss {:.4}, lr {:.3e}, {:.1} tok/s, peak {:.3} GB",
                p.step, p.train_loss.unwrap_or(f32::NAN), p.learning_rate, p.tokens_per_second, p.peak_memory_gb
            ),
            Val => eprintln!("Iter {}: val loss {:.4}, val ppl {:.3}", p.step, p.val_loss.unwrap_or(f32::NAN), p.val_ppl.unwrap_or(f32::NAN)),
            Save => eprintln!("Iter {}: saved {}", p.step, p.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
            Done => {}
        }
    })?;
    if a.bench_skip.is_some() {
        let cpu = common::cpu_seconds() - cpu_from.unwrap_or(0.0);
        // With steps_per_report = 1 every Train event is one step; its tokens/s is that step's.
        let per_step = report.run.trained_tokens as f64 / report.run.steps.max(1) as f64;
        let measured: Vec<f32> = steps.iter().filter(|s| s.0 > skip).map(|s| s.1).collect();
        let secs: f64 = measured.iter().map(|t| per_step / *t as f64).sum();
        println!(
            "{}",
            serde_json::json!({
                "tool": "sam-brain",
                "first_loss": report.run.first_loss,
                "val_loss_before": first_val,
                "tokens_per_second": per_step * measured.len() as f64 / secs,
                "tokens_per_cpu_second": per_step * measured.len() as f64 / cpu,
                "steps_measured": measured.len(),
                "peak_memory_gb": report.run.peak_memory_gb,
                "wall_s": t0.elapsed().as_secs_f64(),
            })
        );
        return Ok(());
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
