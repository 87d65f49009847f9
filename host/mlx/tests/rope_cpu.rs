//! The bridge's CPU RoPE against a plain f64 implementation in the test (values) and MLX's own
//! `fast::rope` (on the CPU: composed ops) for values and, by MLX's autodiff, gradients: the
//! transposed (B, L, H, D) -> (B, H, L, D) view attention gives it, partial rotary dims,
//! offsets (cached decoding), position scale, explicit periods (Llama 3's), a strided last
//! axis, rows enough for threads, other dtypes and shape errors.

mod common;
use common::*;
use mlx::fast::{mlx_rope, mlx_rope_with_freqs, rope_cpu};
use mlx::{Array, Dtype};

/// Rotate-half RoPE of x (.., L, D) (rows of D, positions cycling over L), in f64.
fn rope_ref(x: &[f32], l: usize, d: usize, dims: usize, periods: &[f64], scale: f64, offset: usize) -> Vec<f32> {
    let half = dims / 2;
    let mut out = x.to_vec();
    for (row, chunk) in x.chunks(d).enumerate() {
        let pos = ((row % l) + offset) as f64 * scale;
        for i in 0..half {
            let theta = pos / periods[i];
            let (s, c) = theta.sin_cos();
            let (a, b) = (chunk[i] as f64, chunk[i + half] as f64);
            out[row * d + i] = (a * c - b * s) as f32;
            out[row * d + i + half] = (a * s + b * c) as f32;
        }
    }
    out
}

fn base_periods(base: f64, dims: usize) -> Vec<f64> {
    (0..dims / 2).map(|i| base.powf(2.0 * i as f64 / dims as f64)).collect()
}

#[test]
fn fused_rope_matches_a_plain_implementation_and_mlx_gradients() {
    // (B, L, H, D) as the projections give it, rotated as the (B, H, L, D) view attention uses.
    // 2 x 7 x 3 x 64: one thread, full rotary; 4 x 167 x 9 x 64 (SmolLM2's training shape):
    // threads; 1 x 5 x 2 x 80 with 48 rotary dims: AVX2 tails and copied features.
    for (b, l, h, d, dims, base, scale, offset) in [
        (2, 7, 3, 64, 64, 10_000.0f32, 1.0f32, 0),
        (4, 167, 9, 64, 64, 100_000.0, 1.0, 0),
        (1, 5, 2, 80, 48, 1_000_000.0, 0.25, 2_041),
    ] {
        let what = format!("B{b} L{l} H{h} D{d} dims {dims} offset {offset}");
        let (x, _) = rand_arr(&[b, l, h, d], 3);
        let xt = x.transpose(&[0, 2, 1, 3]).unwrap();
        let xv = vals(&xt.contiguous().unwrap());
        let y = rope_cpu(&xt, dims, base, scale, offset, None).unwrap();
        let want = rope_ref(&xv, l as usize, d as usize, dims as usize, &base_periods(base as f64, dims as usize), scale as f64, offset as usize);
        // f32 angles as MLX computes them: at position 2,041 their rounding is ~1e-4 rad.
        let tol = if offset > 1000 { 2e-3 } else { 2e-5 };
        assert_close(&vals(&y), &want, tol, &format!("{what}: values vs f64"));
        let mlx = mlx_rope(&xt, dims, false, base, scale, offset).unwrap();
        assert_close(&vals(&y), &vals(&mlx), 1e-5, &format!("{what}: values vs MLX"));

        let (c, _) = rand_arr(&[b, h, l, d], 4);
        let f_ours = |a: &[Array]| Ok(vec![rope_cpu(&a[0].transpose(&[0, 2, 1, 3])?, dims, base, scale, offset, None)?.mul(&c)?.sum_all()?]);
        let f_mlx = |a: &[Array]| Ok(vec![mlx_rope(&a[0].transpose(&[0, 2, 1, 3])?, dims, false, base, scale, offset)?.mul(&c)?.sum_all()?]);
        let (v1, g1) = mlx::value_and_grad(f_ours, &[&x], &[0]).unwrap();
        let (v2, g2) = mlx::value_and_grad(f_mlx, &[&x], &[0]).unwrap();
        assert_close(&vals(&v1[0]), &vals(&v2[0]), 1e-4, &format!("{what}: loss"));
        assert_eq!(g1[0].shape(), x.shape(), "{what}: gradient shape");
        assert_close(&vals(&g1[0]), &vals(&g2[0]), 3e-5, &format!("{what}: dx vs MLX autodiff"));
    }
}

#[test]
fn explicit_periods_and_a_strided_last_axis() {
    let (dims, l, d) = (16usize, 9usize, 16usize);
    // Llama 3-like periods: the long ones stretched.
    let periods: Vec<f32> = base_periods(500_000.0, dims).iter().enumerate().map(|(i, p)| (*p * if i > 5 { 8.0 } else { 1.0 }) as f32).collect();
    let pa = Array::from_slice(&periods, &[periods.len() as i32]).unwrap();
    let (x, xv) = rand_arr(&[2, 3, l as i32, d as i32], 5);
    let y = rope_cpu(&x, dims as i32, 0.0, 1.0, 3, Some(&pa)).unwrap();
    let p64: Vec<f64> = periods.iter().map(|p| *p as f64).collect();
    assert_close(&vals(&y), &rope_ref(&xv, l, d, dims, &p64, 1.0, 3), 2e-5, "periods: values vs f64");
    let mlx = mlx_rope_with_freqs(&x, dims as i32, false, 1.0, 3, &pa).unwrap();
    assert_close(&vals(&y), &vals(&mlx), 1e-5, "periods: values vs MLX");

    // Features read with a stride (the last axis of a transposed view).
    let xs = x.swapaxes(-1, -2).unwrap().contiguous().unwrap().swapaxes(-1, -2).unwrap();
    let ys = rope_cpu(&xs, dims as i32, 0.0, 1.0, 3, Some(&pa)).unwrap();
    assert_close(&vals(&ys), &vals(&y), 0.0, "strided last axis");
}

#[test]
fn other_dtypes_come_back_in_their_own_and_bad_shapes_are_errors() {
    let (x, _) = rand_arr(&[2, 4, 8, 32], 7);
    let xb = x.as_type(Dtype::Bfloat16).unwrap();
    let y16 = rope_cpu(&xb, 32, 10_000.0, 1.0, 0, None).unwrap();
    assert_eq!(y16.dtype(), Dtype::Bfloat16);
    let y32 = rope_cpu(&xb.as_type(Dtype::Float32).unwrap(), 32, 10_000.0, 1.0, 0, None).unwrap();
    assert_close(&vals(&y16), &vals(&y32), 1e-2, "bfloat16");

    let err = |r: mlx::Result<Array>| r.unwrap_err().to_string();
    assert!(err(rope_cpu(&x, 33, 10_000.0, 1.0, 0, None)).contains("must be even"));
    assert!(err(rope_cpu(&x, 64, 10_000.0, 1.0, 0, None)).contains("at most the last axis"));
    let (p, _) = rand_arr(&[8], 8);
    assert!(err(rope_cpu(&x, 32, 0.0, 1.0, 0, Some(&p))).contains("dims / 2 = 16"));
    let (v, _) = rand_arr(&[32], 9);
    assert!(err(rope_cpu(&v, 32, 10_000.0, 1.0, 0, None)).contains("at least two axes"));
}
