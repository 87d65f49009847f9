//! Benchmarks of the MLX binding (run by bench/mlx_ops.sh):
//! matmul GFLOP/s, and the fused vs composed cross-entropy forward + backward.
//!
//! Usage: mlx_bench [matmul|ce|all] [--n N --h H --v V --reps R]

use std::time::Instant;

use mlx::loss::{cross_entropy, CeOptions, CePath};
use mlx::{Array, Dtype};

fn arg(name: &str, default: i32) -> i32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best of `reps` timed runs after a warm-up (the minimum is the least disturbed by other load).
fn time<F: FnMut() -> mlx::Result<()>>(reps: i32, mut f: F) -> mlx::Result<f64> {
    f()?; // warm-up
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn matmul(reps: i32) -> mlx::Result<()> {
    for n in [256, 1024] {
        let a = mlx::random::normal(&[n, n], Dtype::Float32, 0.0, 1.0, None)?;
        let b = mlx::random::normal(&[n, n], Dtype::Float32, 0.0, 1.0, None)?;
        mlx::eval([&a, &b])?;
        let reps = if n <= 256 { reps * 20 } else { reps };
        let s = time(reps, || a.matmul(&b)?.eval())?;
        let gflops = 2.0 * (n as f64).powi(3) / s / 1e9;
        println!("matmul f32 {n}x{n}x{n}: {:.2} ms, {gflops:.1} GFLOP/s", s * 1e3);
    }
    Ok(())
}

fn ce(n: i32, h: i32, v: i32, reps: i32) -> mlx::Result<()> {
    let hid = mlx::random::normal(&[n, h], Dtype::Float32, 0.0, 1.0, None)?;
    let w = mlx::random::normal(&[v, h], Dtype::Float32, 0.0, 0.02, None)?;
    let t = mlx::random::randint(0, v, &[n], Dtype::Int32, None)?;
    mlx::eval([&hid, &w, &t])?;
    let wt = w.swapaxes(0, 1)?;
    let s = time(reps, || hid.matmul(&wt)?.eval())?;
    let gf = 2.0 * n as f64 * h as f64 * v as f64 / 1e9;
    println!("logits matmul alone ({n}x{h} @ {h}x{v}, {gf:.1} GFLOP): {:.1} ms, {:.1} GFLOP/s", s * 1e3, gf / s);
    println!("cross-entropy N={n} H={h} V={v} (f32), forward + backward:");
    for (path, name) in [(CePath::Fused, "fused   "), (CePath::Composed, "composed")] {
        // d hidden: the LoRA case, the projection is a constant captured by the loss function.
        for (with_w, what) in [(false, "d hidden          "), (true, "d hidden + d weight")] {
            mlx::memory::clear_cache()?;
            mlx::memory::reset_peak_memory()?;
            let base = mlx::memory::active_memory()?;
            let mut loss = 0.0f32;
            let s = time(reps, || {
                let o = CeOptions { path, ..Default::default() };
                let (vals, grads) = if with_w {
                    mlx::value_and_grad(
                        |a: &[Array]| Ok(vec![cross_entropy(&a[0], &a[1], &t, o)?.mean_all()?]),
                        &[&hid, &w],
                        &[0, 1],
                    )?
                } else {
                    mlx::value_and_grad(|a: &[Array]| Ok(vec![cross_entropy(&a[0], &w, &t, o)?.mean_all()?]), &[&hid], &[0])?
                };
                let mut all: Vec<&Array> = grads.iter().collect();
                all.push(&vals[0]);
                mlx::eval(all)?;
                loss = vals[0].item::<f32>()?;
                Ok(())
            })?;
            let peak = mlx::memory::peak_memory()?.saturating_sub(base);
            println!(
                "  {name} {what}: {:8.1} ms  (loss {loss:.5}, peak extra memory {:.0} MB)",
                s * 1e3,
                peak as f64 / 1e6
            );
        }
        let s = time(reps, || cross_entropy(&hid, &w, &t, CeOptions { path, ..Default::default() })?.eval())?;
        println!("  {name} forward only        : {:8.1} ms", s * 1e3);
    }
    Ok(())
}

fn main() -> mlx::Result<()> {
    let info = mlx::init()?;
    println!(
        "MLX {} (bridge {}), OpenBLAS preloaded: {}, fused CE uses BLAS: {}",
        info.mlx_version,
        info.path.display(),
        info.openblas,
        mlx::loss::fused_kernel_has_blas()?
    );
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let reps = arg("--reps", 3);
    if what == "matmul" || what == "all" {
        matmul(reps)?;
    }
    if what == "ce" || what == "all" {
        ce(arg("--n", 368), arg("--h", 256), arg("--v", 151936), reps)?;
    }
    Ok(())
}
