//! The bridge's CPU quantized matmul against a plain f64 implementation in the test (unpacking
//! MLX's affine layout by hand) and MLX's own `dequantize` + matmul, for both of its paths (a few
//! rows: straight from the packed words; many rows: dequantized tiles + BLAS), and its gradient
//! w.r.t. x against MLX's autodiff of the dense product; and its whole-matrix `dequantize_cpu`.

mod common;
use common::*;
use mlx::quantized::{dequantize, dequantize_cpu, quantize, quantized_matmul_cpu};
use mlx::{Array, Dtype};

/// Row-major (N, K) floats of a quantized matrix, unpacked here (no MLX dequantize).
fn unpack_plain(q: &mlx::quantized::Quantized) -> Vec<f32> {
    let words = q.weight.to_vec::<u32>().unwrap();
    let scales = vals(&q.scales);
    let biases = vals(&q.biases);
    let (n, wpr) = (q.weight.dim(0) as usize, q.weight.dim(1) as usize);
    let per = 32 / q.bits as usize;
    let k = wpr * per;
    let groups = k / q.group_size as usize;
    let mask = (1u32 << q.bits) - 1;
    let mut out = vec![0f32; n * k];
    for r in 0..n {
        for c in 0..k {
            let v = (words[r * wpr + c / per] >> (q.bits as usize * (c % per))) & mask;
            let g = r * groups + c / q.group_size as usize;
            out[r * k + c] = v as f32 * scales[g] + biases[g];
        }
    }
    out
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
            assert_close(&vals(&y), &want, 2e-5, &format!("x @ W^T, bits {bits}, group {group}, {m} rows"));
            // x (M, N) @ W -> (M, K): the gradient's direction.
            let (g, gv) = rand_arr(&[m as i32, n as i32], 200 + m as u64);
            let y = quantized_matmul_cpu(&g, &q.weight, &q.scales, &q.biases, false, group, bits).unwrap();
            assert_eq!(y.shape(), vec![m as i32, k as i32]);
            assert_close(&vals(&y), &matmul_ref(&gv, &dense, m, n, k), 2e-5, &format!("x @ W, bits {bits}, {m} rows"));
        }
    }
}

/// Decoding picks its one-row 4-bit kernel by the CPU (AVX-512 VBMI, else AVX2 bytes, else plain
/// C++), once per process; the test above checks the one this CPU gets, and this reruns it in a
/// child process with the VBMI kernel turned off, so a CPU with VBMI checks the byte kernel too.
#[test]
fn the_byte_kernel_matches_too_where_the_vbmi_kernel_would_run() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "matches_a_plain_unpack_and_mlx_dequantize_for_every_path_and_width", "--test-threads=1"])
        .env("BRAIN_MLX_NO_VBMI", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && log.contains("1 passed"), "{log}\n{}", String::from_utf8_lossy(&out.stderr));
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
            assert_close(&up(&y), &up(&y_dense), 2e-5, &format!("x @ W^T, {what}, x {shape:?}"));
            assert_close(&up(&v1[0]), &up(&v2[0]), 1e-5, &format!("value, {what}, x {shape:?}"));
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
