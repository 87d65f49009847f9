//! The all-reduce of data-parallel training (run by bench/distributed.sh as two ranks): time per
//! update to sum one adapter's gradients over the ranks, `--floats N` f32 values in `--tensors T`
//! arrays (a Qwen2.5-1.5B-shaped model's rank-8 LoRA on q/k/v/o of 16 layers: 1,245,184 in 128),
//! both as one `all_sum` per tensor and as training does it (`World::all_sum`: flattened into
//! one buffer per 64 MiB).
//!
//! Usage: MLX_RANK=r MLX_HOSTFILE=ring.json allreduce_bench [--floats N] [--tensors T] [--reps R]

use std::time::Instant;

use brain_train::distributed::world;
use mlx::Array;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (floats, tensors, reps) = (arg("--floats", 1_245_184), arg("--tensors", 128), arg("--reps", 20));
    let w = world()?;
    let per = floats / tensors;
    let xs: Vec<Array> = (0..tensors).map(|i| Array::from_slice(&vec![(i + w.rank) as f32; per], &[per as i32])).collect::<mlx::Result<_>>()?;
    mlx::eval(&xs)?;
    let time = |f: &dyn Fn() -> Result<Vec<Array>, Box<dyn std::error::Error>>| -> Result<f64, Box<dyn std::error::Error>> {
        mlx::eval(&f()?)?; // warm-up
        let t = Instant::now();
        for _ in 0..reps {
            mlx::eval(&f()?)?;
        }
        Ok(t.elapsed().as_secs_f64() / reps as f64 * 1e3)
    };
    let each = time(&|| Ok(xs.iter().map(mlx::distributed::all_sum).collect::<mlx::Result<Vec<_>>>()?))?;
    let grouped = time(&|| Ok(w.all_sum(xs.clone())?))?;
    let check = w.all_sum(xs.clone())?;
    let want = (0..w.size).map(|r| r as f32).sum::<f32>() + (w.size as f32) * 3.0;
    assert_eq!(check[3].slice_axis(0, 0, 1)?.item::<f32>()?, want, "the sums are right");
    if w.rank == 0 {
        let mb = (per * tensors * 4) as f64 / 1e6;
        println!("| {} f32 ({mb:.1} MB) in {tensors} tensors | {} | {each:.1} ms | {grouped:.1} ms |", per * tensors, w.size);
    }
    Ok(())
}
