//! Benchmarks of the MLX binding (run by bench/mlx_ops.sh):
//! matmul GFLOP/s, and the fused vs composed cross-entropy forward + backward.
//!
//! Usage: mlx_bench [matmul|ce|qmm|attn|bf16|all] [--n N --h H --v V --reps R]
//!
//! `qmm`: a 4-bit (group 64) 1536 x 8960 matrix (a Qwen2.5-1.5B MLP projection) times 1 and
//! 512 rows: f32 BLAS on the dense copy, MLX's quantized_matmul, the bridge's CPU kernel.
//!
//! `bf16`: a SmolLM2 LoRA step's GEMM shapes (664 rows), f32 BLAS vs the bridge's bf16-product
//! kernel (packing included), both orientations (a layer's forward, its input gradient).

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

/// CPU time (user + system) of this process in seconds, from /proc (Linux; 0 elsewhere).
fn cpu_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

thread_local! {
    static LAST_CPU: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// Best of `reps` timed runs after a warm-up (the minimum is the least disturbed by other load);
/// the mean CPU time per run is left in LAST_CPU.
fn time<F: FnMut() -> mlx::Result<()>>(reps: i32, mut f: F) -> mlx::Result<f64> {
    f()?; // warm-up
    let mut best = f64::MAX;
    let c0 = cpu_time();
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    LAST_CPU.with(|c| c.set((cpu_time() - c0) / reps as f64));
    Ok(best)
}

fn last_cpu_ms() -> f64 {
    LAST_CPU.with(|c| c.get()) * 1e3
}

fn matmul(reps: i32) -> mlx::Result<()> {
    for n in [256, 1024] {
        let a = mlx::random::normal(&[n, n], Dtype::Float32, 0.0, 1.0, None)?;
        let b = mlx::random::normal(&[n, n], Dtype::Float32, 0.0, 1.0, None)?;
        mlx::eval([&a, &b])?;
        let reps = if n <= 256 { reps * 20 } else { reps };
        let s = time(reps, || a.matmul(&b)?.eval())?;
        let gflops = 2.0 * (n as f64).powi(3) / s / 1e9;
        println!("matmul f32 {n}x{n}x{n}: {:.2} ms, {gflops:.1} GFLOP/s (CPU {:.2} ms)", s * 1e3, last_cpu_ms());
    }
    Ok(())
}

fn bf16(reps: i32) -> mlx::Result<()> {
    if !mlx::bf16mm::is_available()? {
        println!("bf16: this CPU lacks AVX-512 BF16 (or BRAIN_MLX_NO_BF16_GEMM=1); nothing to compare");
        return Ok(());
    }
    // (rows, out, in): q/o, k/v, gate/up, down, one output-matrix chunk; then 1024^3.
    for (m, n, k) in [
        (664, 576, 576),
        (664, 192, 576),
        (664, 1536, 576),
        (664, 576, 1536),
        (664, 4096, 576),
        (1024, 1024, 1024),
    ] {
        let x = mlx::random::normal(&[m, k], Dtype::Float32, 0.0, 1.0, None)?;
        let w = mlx::random::normal(&[n, k], Dtype::Float32, 0.0, 1.0, None)?.as_type(Dtype::Bfloat16)?;
        let wf = w.as_type(Dtype::Float32)?;
        let g = mlx::random::normal(&[m, n], Dtype::Float32, 0.0, 1.0, None)?;
        mlx::eval([&x, &w, &wf, &g])?;
        let wft = wf.swapaxes(0, 1)?;
        let gf = 2.0 * m as f64 * n as f64 * k as f64 / 1e9;
        let f32_fwd = time(reps, || x.matmul(&wft)?.eval())?;
        let bf_fwd = time(reps, || mlx::bf16mm::matmul_cpu(&x, &w, true)?.eval())?;
        let f32_bwd = time(reps, || g.matmul(&wf)?.eval())?;
        let bf_bwd = time(reps, || mlx::bf16mm::matmul_cpu(&g, &w, false)?.eval())?;
        println!(
            "bf16 {m}x{n}x{k}: x@W^T f32 {:.2} ms ({:.0} GFLOP/s), bf16 {:.2} ms ({:.0}); g@W f32 {:.2} ms ({:.0}), bf16 {:.2} ms ({:.0})",
            f32_fwd * 1e3,
            gf / f32_fwd,
            bf_fwd * 1e3,
            gf / bf_fwd,
            f32_bwd * 1e3,
            gf / f32_bwd,
            bf_bwd * 1e3,
            gf / bf_bwd
        );
    }
    bf16_decode(reps)
}

/// One row (decoding) through SmolLM2's and the 1.5B shape's matrices: f32 sgemv vs the bf16
/// kernel reading W in place. Each pass multiplies enough distinct matrices (>= 512 MB in f32)
/// that W comes from memory, not cache, as it does when decoding.
fn bf16_decode(reps: i32) -> mlx::Result<()> {
    for (n, k) in [(576, 576), (1536, 576), (576, 1536), (49152, 576), (1536, 1536), (8960, 1536), (1536, 8960)] {
        let copies = ((512usize << 20) / (4 * n as usize * k as usize)).max(2);
        let x = mlx::random::normal(&[1, k], Dtype::Float32, 0.0, 1.0, None)?;
        let ws: Vec<Array> = (0..copies)
            .map(|_| mlx::random::normal(&[n, k], Dtype::Float32, 0.0, 1.0, None)?.as_type(Dtype::Bfloat16))
            .collect::<mlx::Result<_>>()?;
        mlx::eval(ws.iter().chain([&x]))?;
        let bf_pass = time(reps, || {
            let ys: Vec<Array> = ws.iter().map(|w| mlx::bf16mm::matmul_cpu(&x, w, true)).collect::<mlx::Result<_>>()?;
            mlx::eval(ys.iter())
        })?;
        let wfs: Vec<Array> = ws.iter().map(|w| w.as_type(Dtype::Float32)).collect::<mlx::Result<_>>()?;
        drop(ws);
        mlx::eval(wfs.iter())?;
        let f32_pass = time(reps, || {
            let ys: Vec<Array> = wfs.iter().map(|w| x.matmul(&w.swapaxes(0, 1)?)).collect::<mlx::Result<_>>()?;
            mlx::eval(ys.iter())
        })?;
        let (per_f32, per_bf) = (f32_pass / copies as f64, bf_pass / copies as f64);
        let bytes = n as f64 * k as f64;
        println!(
            "bf16 decode 1x{n}x{k} ({copies} matrices): f32 {:.1} us ({:.1} GB/s of W), bf16 in place {:.1} us ({:.1} GB/s): {:.2}x",
            per_f32 * 1e6,
            4.0 * bytes / per_f32 / 1e9,
            per_bf * 1e6,
            2.0 * bytes / per_bf / 1e9,
            per_f32 / per_bf
        );
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
    println!(
        "logits matmul alone ({n}x{h} @ {h}x{v}, {gf:.1} GFLOP): {:.1} ms wall ({:.1} GFLOP/s), {:.1} ms CPU",
        s * 1e3,
        gf / s,
        last_cpu_ms()
    );
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
                "  {name} {what}: {:8.1} ms wall, {:8.1} ms CPU  (loss {loss:.5}, peak extra memory {:.0} MB)",
                s * 1e3,
                last_cpu_ms(),
                peak as f64 / 1e6
            );
        }
        let s = time(reps, || cross_entropy(&hid, &w, &t, CeOptions { path, ..Default::default() })?.eval())?;
        println!("  {name} forward only        : {:8.1} ms wall, {:8.1} ms CPU", s * 1e3, last_cpu_ms());
    }
    Ok(())
}

fn qmm(reps: i32) -> mlx::Result<()> {
    use mlx::quantized::{quantize, quantized_matmul, quantized_matmul_cpu};
    let (k, n) = (1536, 8960);
    let w = mlx::random::normal(&[n, k], Dtype::Float32, 0.0, 0.02, None)?;
    let q = quantize(&w, 64, 4)?;
    let dense = q.dequantize()?;
    mlx::eval([&dense, &q.weight, &q.scales, &q.biases])?;
    let dense_t = dense.swapaxes(0, 1)?;
    for m in [1, 512] {
        let x = mlx::random::normal(&[m, k], Dtype::Float32, 0.0, 1.0, None)?;
        x.eval()?;
        let gf = 2.0 * m as f64 * k as f64 * n as f64 / 1e9;
        let r = if m == 1 { reps * 10 } else { reps };
        let row = |name: &str, s: f64| println!("qmm {m:>3}x{k} @ ({n}x{k})^T {name}: {:8.2} ms, {:6.1} GFLOP/s (CPU {:.2} ms)", s * 1e3, gf / s, last_cpu_ms());
        let s = time(r, || x.matmul(&dense_t)?.eval())?;
        row("f32 dense BLAS     ", s);
        let s = time(if m == 1 { r } else { 1 }, || quantized_matmul(&x, &q.weight, &q.scales, Some(&q.biases), true, 64, 4)?.eval())?;
        row("MLX quantized_matmul", s);
        let s = time(r, || quantized_matmul_cpu(&x, &q.weight, &q.scales, &q.biases, true, 64, 4)?.eval())?;
        row("bridge CPU kernel  ", s);
    }
    // Decoding reads every matrix once per token, from memory rather than a cache: one row
    // through 48 different matrices (~410 MB with their f32 scales and biases, more than the
    // caches), as bytes read per second.
    let mats: Vec<_> = (0..48).map(|_| quantize(&w.add(&mlx::random::normal(&[n, k], Dtype::Float32, 0.0, 0.001, None)?)?, 64, 4)).collect::<mlx::Result<_>>()?;
    mlx::eval(mats.iter().flat_map(|q| [&q.weight, &q.scales, &q.biases]))?;
    let bytes: usize = mats.iter().map(|q| q.weight.nbytes() + q.scales.nbytes() + q.biases.nbytes()).sum();
    let x = mlx::random::normal(&[1, k], Dtype::Float32, 0.0, 1.0, None)?;
    x.eval()?;
    let s = time(reps, || {
        let ys: Vec<Array> = mats.iter().map(|q| quantized_matmul_cpu(&x, &q.weight, &q.scales, &q.biases, true, 64, 4)).collect::<mlx::Result<_>>()?;
        mlx::eval(ys.iter())
    })?;
    println!("qmm   1x{k} through 48 matrices of ({n}x{k}), {:.0} MB: {:8.2} ms, {:5.1} GB/s read (CPU {:.2} ms)", bytes as f64 / 1e6, s * 1e3, bytes as f64 / s / 1e9, last_cpu_ms());
    Ok(())
}

/// Causal grouped-query attention forward, and forward + backward (vjp w.r.t. q, k, v): MLX's
/// composed `scaled_dot_product_attention` vs the bridge's fused kernel, at a SmolLM2 training
/// shape (4 rows of 167 tokens, 9 heads over 3 KV heads of 64), a Qwen2.5-1.5B one at 2,048
/// tokens (12 over 2 of 128) and one decoding step against 2,048 cached positions.
fn attn(reps: i32) -> mlx::Result<()> {
    use mlx::fast::{attention_cpu, mlx_sdpa, SdpaMask};
    for (b, h, kv, l, s, d) in [(4, 9, 3, 167, 167, 64), (1, 12, 2, 2048, 2048, 128), (1, 12, 2, 1, 2048, 128)] {
        let q = mlx::random::normal(&[b, h, l, d], Dtype::Float32, 0.0, 1.0, None)?;
        let k = mlx::random::normal(&[b, kv, s, d], Dtype::Float32, 0.0, 1.0, None)?;
        let v = mlx::random::normal(&[b, kv, s, d], Dtype::Float32, 0.0, 1.0, None)?;
        mlx::eval([&q, &k, &v])?;
        let scale = 1.0 / (d as f32).sqrt();
        let shape = format!("B{b} H{h}/{kv} L{l} S{s} D{d}");
        for fused in [false, true] {
            let name = if fused { "bridge fused" } else { "MLX composed" };
            let f = |a: &[Array]| -> mlx::Result<Vec<Array>> {
                let o = if fused { attention_cpu(&a[0], &a[1], &a[2], scale, true)? } else { mlx_sdpa(&a[0], &a[1], &a[2], scale, SdpaMask::Causal)? };
                Ok(vec![o.sum_all()?])
            };
            let fwd = time(reps, || f(&[q.clone(), k.clone(), v.clone()])?[0].eval())?;
            let fwd_cpu = last_cpu_ms();
            let both = if l > 1 {
                time(reps, || {
                    let (_, g) = mlx::value_and_grad(f, &[&q, &k, &v], &[0, 1, 2])?;
                    mlx::eval(g.iter())
                })?
            } else {
                f64::NAN
            };
            println!("attn {shape:<28} {name}: forward {:8.2} ms (CPU {fwd_cpu:.2} ms), forward + backward {:8.2} ms", fwd * 1e3, both * 1e3);
        }
    }
    Ok(())
}

fn main() -> mlx::Result<()> {
    let info = mlx::init()?;
    println!(
        "MLX {} (bridge {}), OpenBLAS preloaded: {}, freed heap kept: {}, fused CE uses BLAS: {}",
        info.mlx_version,
        info.path.display(),
        info.openblas,
        info.heap_kept,
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
    if what == "qmm" || what == "all" {
        qmm(reps)?;
    }
    if what == "attn" || what == "all" {
        attn(reps)?;
    }
    if what == "bf16" || what == "all" {
        bf16(reps)?;
    }
    Ok(())
}
