//! The bridge's CPU quantized matmul against a plain f64 implementation in the test (unpacking
//! MLX's affine layout by hand) and MLX's own `dequantize` + matmul, for both of its paths (a few
//! rows: straight from the packed words; many rows: dequantized tiles + BLAS), and its gradient
//! w.r.t. x against MLX's autodiff of the dense product; and its whole-matrix `dequantize_cpu`.
//! Decoding's one-row kernel for 4 bits on CPUs with AVX-512 VNNI rounds x to 8-bit integers, as
//! llama.cpp does: it is checked against that scheme done here in f64, and against the exact
//! product within the bound the rounding allows.

mod common;
use common::*;
use mlx::quantized::{dequantize, dequantize_cpu, quantize, quantized_matmul_cpu, row_kernel};
use mlx::{Array, Dtype};

/// Row-major (N, K) floats of a quantized matrix, unpacked here (no MLX dequantize).
fn unpack_plain(q: &mlx::quantized::Quantized) -> Vec<f32> {
    let (scales, biases) = (vals(&q.scales), vals(&q.biases));
    let codes = codes(q);
    let k = codes.len() / q.weight.dim(0) as usize;
    let groups = k / q.group_size as usize;
    let group_of = |i: usize| (i / k) * groups + (i % k) / q.group_size as usize;
    codes.iter().enumerate().map(|(i, &v)| v as f32 * scales[group_of(i)] + biases[group_of(i)]).collect()
}

/// The integer codes of a quantized matrix, row-major (N, K): value c of word w is its bits
/// [bits * c, bits * (c + 1)), lowest first.
fn codes(q: &mlx::quantized::Quantized) -> Vec<u32> {
    let words = q.weight.to_vec::<u32>().unwrap();
    let per = 32 / q.bits as usize;
    let mask = (1u32 << q.bits) - 1;
    (0..words.len() * per).map(|i| (words[i / per] >> (q.bits as usize * (i % per))) & mask).collect()
}

fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// What the "vnni-int8" kernel computes for one row `x` through the (N, K) matrix of `codes`,
/// `scales`, `biases`, in f64: per group, d = max |x| / 127 and x rounded to q = round(x / d)
/// (ties to even, in f32 as the kernel does), y = sum_g s_g d_g sum_k code_k q_k + b_g sum_k x_k.
/// Also the most that rounding x can move each output from the exact product:
/// sum_g |s_g| d_g / 2 sum_k code_k.
fn int8_row_ref(x: &[f32], codes: &[u32], scales: &[f32], biases: &[f32], group: usize) -> (Vec<f32>, Vec<f32>) {
    let k = x.len();
    let (n, groups) = (codes.len() / k, k / group);
    let mut d = vec![0f32; groups];
    let mut xq = vec![0f32; k];
    for g in 0..groups {
        let xg = &x[g * group..(g + 1) * group];
        let amax = xg.iter().fold(0f32, |m, v| m.max(v.abs()));
        d[g] = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        for (j, v) in xg.iter().enumerate() {
            xq[g * group + j] = (v * inv).round_ties_even().clamp(-127.0, 127.0);
        }
    }
    let (mut y, mut bound) = (vec![0f32; n], vec![0f32; n]);
    for r in 0..n {
        let (mut acc, mut b) = (0f64, 0f64);
        for g in 0..groups {
            let (s, bias) = (scales[r * groups + g] as f64, biases[r * groups + g] as f64);
            let ks = g * group..(g + 1) * group;
            let dot: f64 = ks.clone().map(|c| codes[r * k + c] as f64 * xq[c] as f64).sum();
            let xsum: f64 = ks.clone().map(|c| x[c] as f64).sum();
            let csum: f64 = ks.map(|c| codes[r * k + c] as f64).sum();
            acc += s * d[g] as f64 * dot + bias * xsum;
            b += s.abs() * d[g] as f64 / 2.0 * csum;
        }
        y[r] = acc as f32;
        bound[r] = b as f32;
    }
    (y, bound)
}

/// Checks one row's output `y` from the "vnni-int8" kernel: the 8-bit scheme done in f64, and the
/// exact product `exact` within the rounding's bound (plus f32 summation slack).
fn check_int8_row(y: &[f32], x: &[f32], q: &mlx::quantized::Quantized, exact: &[f32], what: &str) {
    let (scales, biases) = (vals(&q.scales), vals(&q.biases));
    let (want, bound) = int8_row_ref(x, &codes(q), &scales, &biases, q.group_size as usize);
    assert_close(y, &want, 2e-5, &format!("{what}: the 8-bit scheme"));
    for (i, ((a, e), b)) in y.iter().zip(exact).zip(&bound).enumerate() {
        assert!((a - e).abs() <= b + 1e-4 * e.abs().max(1.0), "{what}[{i}]: {a} vs exact {e}, beyond the rounding bound {b}");
    }
    // The rounding is felt (this is not the f32 kernel) and the bound is not vacuous.
    let err = y.iter().zip(exact).map(|(a, e)| (a - e).abs()).fold(0f32, f32::max);
    let scale = exact.iter().fold(0f32, |m, e| m.max(e.abs()));
    assert!(err > 1e-6 * scale && err < 0.05 * scale, "{what}: error {err} against outputs up to {scale}");
}

#[test]
fn matches_a_plain_unpack_and_mlx_dequantize_for_every_path_and_width() {
    // N = 300 is not a multiple of any tile; M = 1 and 3 take the direct path, 9 and 70 tiles.
    let (n, k) = (300usize, 256usize);
    let (w, _) = rand_arr(&[n as i32, k as i32], 11);
    for (bits, group) in [(4, 64), (8, 32), (2, 128), (4, 32), (4, 128), (8, 64)] {
        let q = quantize(&w, group, bits).unwrap();
        let dense = unpack_plain(&q);
        let mlx_dense = vals(&dequantize(&q.weight, &q.scales, Some(&q.biases), group, bits).unwrap());
        assert_close(&dense, &mlx_dense, 1e-6, "plain unpack vs mlx dequantize");
        // The bridge's whole-matrix dequantization writes the same floats.
        let ours = dequantize_cpu(&q.weight, &q.scales, &q.biases, group, bits).unwrap();
        assert_eq!(ours.shape(), vec![n as i32, k as i32]);
        assert_close(&vals(&ours), &dense, 1e-6, &format!("dequantize_cpu, bits {bits}, group {group}"));
        let dense_t = transpose(&dense, n, k);
        for m in [1usize, 3, 9, 70] {
            let (x, xv) = rand_arr(&[m as i32, k as i32], 100 + m as u64);
            let y = quantized_matmul_cpu(&x, &q.weight, &q.scales, &q.biases, true, group, bits).unwrap();
            assert_eq!(y.shape(), vec![m as i32, n as i32]);
            let want = matmul_ref(&xv, &dense_t, m, k, n);
            let what = format!("x @ W^T, bits {bits}, group {group}, {m} rows");
            if m == 1 && row_kernel(bits, group).unwrap() == "vnni-int8" {
                check_int8_row(&vals(&y), &xv, &q, &want, &what);
            } else {
                assert_close(&vals(&y), &want, 2e-5, &what);
            }
            // x (M, N) @ W -> (M, K): the gradient's direction.
            let (g, gv) = rand_arr(&[m as i32, n as i32], 200 + m as u64);
            let y = quantized_matmul_cpu(&g, &q.weight, &q.scales, &q.biases, false, group, bits).unwrap();
            assert_eq!(y.shape(), vec![m as i32, k as i32]);
            assert_close(&vals(&y), &matmul_ref(&gv, &dense, m, n, k), 2e-5, &format!("x @ W, bits {bits}, {m} rows"));
        }
    }
}

/// Decoding picks its one-row kernel by the CPU once per process: for 4 bits, AVX-512 VNNI (x in
/// 8-bit integers), else VBMI (groups of 64+), else AVX2 bytes, else plain C++; each switch
/// (`BRAIN_MLX_NO_VNNI`, `BRAIN_MLX_NO_VBMI`, `BRAIN_MLX_NO_AVX2`) steps down one.
#[test]
fn the_one_row_kernel_follows_the_cpu_and_the_switches() {
    let off = |v: &str| std::env::var_os(v).is_some();
    #[cfg(target_arch = "x86_64")]
    let (avx2, vnni, vbmi) = (
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && !off("BRAIN_MLX_NO_AVX2"),
        std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vl") && !off("BRAIN_MLX_NO_VNNI"),
        std::arch::is_x86_feature_detected!("avx512vbmi") && std::arch::is_x86_feature_detected!("avx512vl") && !off("BRAIN_MLX_NO_VBMI"),
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (avx2, vnni, vbmi) = (false, false, false);
    let want = |bits: i32, group: i32| match (avx2, bits, group) {
        (false, _, _) => "general",
        (true, 4, _) if vnni => "vnni-int8",
        (true, 4, g) if vbmi && g % 64 == 0 => "vbmi",
        (true, 2, _) => "general",
        _ => "avx2-bytes",
    };
    for (bits, group) in [(4, 32), (4, 64), (4, 128), (8, 32), (8, 64), (2, 64)] {
        assert_eq!(row_kernel(bits, group).unwrap(), want(bits, group), "bits {bits}, group {group}");
    }
}

/// The tests above check the kernels this CPU gets; these rerun them in child processes with the
/// better kernels turned off, so a CPU with VNNI and VBMI checks every kernel below them too.
#[test]
fn every_kernel_below_this_cpus_best_matches_too() {
    for switches in [&["BRAIN_MLX_NO_VNNI"][..], &["BRAIN_MLX_NO_VNNI", "BRAIN_MLX_NO_VBMI"], &["BRAIN_MLX_NO_AVX2"]] {
        for test in [
            "matches_a_plain_unpack_and_mlx_dequantize_for_every_path_and_width",
            "leading_dimensions_other_dtypes_and_the_gradient_match_the_dense_product",
            "the_one_row_kernel_follows_the_cpu_and_the_switches",
        ] {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args(["--exact", test, "--test-threads=1"]);
            for v in switches {
                cmd.env(v, "1");
            }
            let out = cmd.output().unwrap();
            let log = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && log.contains("1 passed"), "{test} with {switches:?}: {log}\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
fn leading_dimensions_other_dtypes_and_the_gradient_match_the_dense_product() {
    let (w, _) = rand_arr(&[96, 128], 5);
    // Scales and biases in bfloat16 (as mlx-community ships them) or float16 (as GGUF stores
    // them), read by the kernel as they are; weights times 1e-5 make float16 scales subnormal.
    for (dtype, w_scale) in [(Dtype::Bfloat16, 1.0f32), (Dtype::Float16, 1.0), (Dtype::Float16, 1e-5)] {
        let what = format!("{dtype:?} scales, weights x {w_scale}");
        let q = quantize(&w.mul(w_scale).unwrap(), 64, 4).unwrap();
        let (s16, b16) = (q.scales.as_type(dtype).unwrap(), q.biases.as_type(dtype).unwrap());
        // The kernel computes in f32 from the 16-bit scales (MLX's dequantize would round to 16 bits).
        let (s32, b32) = (s16.as_type(Dtype::Float32).unwrap(), b16.as_type(Dtype::Float32).unwrap());
        let dense = dequantize(&q.weight, &s32, Some(&b32), 64, 4).unwrap();
        let ours = dequantize_cpu(&q.weight, &s16, &b16, 64, 4).unwrap();
        assert_eq!(ours.dtype(), Dtype::Float32);
        // Compared at the weights' own scale (assert_close's error is relative above 1 only).
        let up = |a: &Array| vals(a).iter().map(|v| v / w_scale).collect::<Vec<f32>>();
        assert_close(&up(&ours), &up(&dense), 1e-6, &format!("dequantize_cpu, {what}"));
        // 10 rows (tiles), 3 (straight from the words), 1 (decoding's byte-wise kernel).
        for shape in [vec![2, 5, 128], vec![3, 128], vec![1, 128]] {
            let (x, _) = rand_arr(&shape, 6);
            let mut cshape = shape.clone();
            *cshape.last_mut().unwrap() = 96;
            let (c, _) = rand_arr(&cshape, 7);
            let f_ours = |a: &[Array]| Ok(vec![quantized_matmul_cpu(&a[0], &q.weight, &s16, &b16, true, 64, 4)?.mul(&c)?.sum_all()?]);
            let f_dense = |a: &[Array]| Ok(vec![a[0].matmul(&dense.swapaxes(0, 1)?)?.mul(&c)?.sum_all()?]);
            let (v1, g1) = mlx::value_and_grad(f_ours, &[&x], &[0]).unwrap();
            let (v2, g2) = mlx::value_and_grad(f_dense, &[&x], &[0]).unwrap();
            assert_eq!(g1[0].shape(), shape);
            let y = quantized_matmul_cpu(&x, &q.weight, &s16, &b16, true, 64, 4).unwrap();
            let y_dense = x.matmul(&dense.swapaxes(0, 1).unwrap()).unwrap();
            if shape[0] == 1 && row_kernel(4, 64).unwrap() == "vnni-int8" {
                // The 8-bit scheme over the f32 values of the 16-bit scales.
                let q32 = mlx::quantized::Quantized { scales: s32.clone(), biases: b32.clone(), ..q.clone() };
                check_int8_row(&up(&y), &up(&x), &q32, &up(&y_dense), &format!("x @ W^T, {what}"));
            } else {
                assert_close(&up(&y), &up(&y_dense), 2e-5, &format!("x @ W^T, {what}, x {shape:?}"));
                assert_close(&up(&v1[0]), &up(&v2[0]), 1e-5, &format!("value, {what}, x {shape:?}"));
            }
            assert_close(&up(&g1[0]), &up(&g2[0]), 1e-5, &format!("d x, {what}, x {shape:?}"));
        }
        // A bfloat16 x comes back in bfloat16.
        let (x, _) = rand_arr(&[2, 128], 8);
        let y = quantized_matmul_cpu(&x.as_type(Dtype::Bfloat16).unwrap(), &q.weight, &s16, &b16, true, 64, 4).unwrap();
        assert_eq!(y.dtype(), Dtype::Bfloat16);
    }
}

#[test]
fn shapes_that_do_not_fit_are_errors_not_crashes() {
    let (w, _) = rand_arr(&[32, 128], 8);
    let q = quantize(&w, 64, 4).unwrap();
    let (x, _) = rand_arr(&[3, 100], 9);
    let e = quantized_matmul_cpu(&x, &q.weight, &q.scales, &q.biases, true, 64, 4).unwrap_err().to_string();
    assert!(e.contains("does not match a 32x128 matrix"), "{e}");
    let (x, _) = rand_arr(&[3, 128], 9);
    let e = quantized_matmul_cpu(&x, &q.weight, &q.scales, &q.biases, true, 32, 4).unwrap_err().to_string();
    assert!(e.contains("group 32 does not fit"), "{e}");
    let e = quantized_matmul_cpu(&x, &q.weight, &q.scales, &q.biases, true, 64, 3).unwrap_err().to_string();
    assert!(e.contains("bits must be 2, 4 or 8"), "{e}");
    let e = dequantize_cpu(&q.weight, &q.scales, &q.biases, 32, 4).unwrap_err().to_string();
    assert!(e.contains("[dequantize_cpu] group 32 does not fit"), "{e}");
    let e = dequantize_cpu(&x, &q.scales, &q.biases, 64, 4).unwrap_err().to_string();
    assert!(e.contains("expected packed uint32"), "{e}");
}
