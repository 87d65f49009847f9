//! The bridge's CPU RMSNorm against a plain f64 implementation in the test (values) and MLX's own
//! `fast::rms_norm` (on the CPU: composed ops) for the gradients w.r.t. x and the weight by MLX's
//! autodiff: with and without a weight, rows long enough for threads, widths with AVX2 tails,
//! other dtypes, and shape errors.

mod common;
use common::*;
use mlx::fast::{mlx_rms_norm, rms_norm_cpu};
use mlx::{Array, Dtype};

fn rms_ref(x: &[f32], w: Option<&[f32]>, d: usize, eps: f32) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            let ms = row.iter().map(|v| *v as f64 * *v as f64).sum::<f64>() / d as f64;
            let r = 1.0 / (ms + eps as f64).sqrt();
            row.iter().enumerate().map(move |(j, v)| (*v as f64 * r * w.map_or(1.0, |w| w[j] as f64)) as f32).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn fused_rms_norm_matches_a_plain_implementation_and_mlx_gradients() {
    // 3 x 5 x 67: AVX2 tails, one thread; 300 x 200: several threads.
    for (shape, seed) in [(vec![3, 5, 67], 1u64), (vec![300, 200], 2), (vec![2, 8], 3)] {
        let d = *shape.last().unwrap() as usize;
        let (x, xv) = rand_arr(&shape, seed);
        let x = x.mul(3.0f32).unwrap();
        let xv: Vec<f32> = xv.iter().map(|v| v * 3.0).collect();
        let (w, wv) = rand_arr(&[d as i32], seed + 10);
        let (c, _) = rand_arr(&shape, seed + 20);
        let eps = 1e-5;
        for weighted in [true, false] {
            let what = format!("{shape:?} weighted {weighted}");
            let wo = weighted.then_some(&w);
            let y = rms_norm_cpu(&x, wo, eps).unwrap();
            assert_close(&vals(&y), &rms_ref(&xv, weighted.then_some(&wv[..]), d, eps), 1e-5, &format!("{what}: values"));
            let argnums: &[i32] = if weighted { &[0, 1] } else { &[0] };
            let f_ours = |a: &[Array]| Ok(vec![rms_norm_cpu(&a[0], weighted.then_some(&a[1]), eps)?.mul(&c)?.sum_all()?]);
            let f_mlx = |a: &[Array]| Ok(vec![mlx_rms_norm(&a[0], weighted.then_some(&a[1]), eps)?.mul(&c)?.sum_all()?]);
            let (v1, g1) = mlx::value_and_grad(f_ours, &[&x, &w], argnums).unwrap();
            let (v2, g2) = mlx::value_and_grad(f_mlx, &[&x, &w], argnums).unwrap();
            assert_close(&vals(&v1[0]), &vals(&v2[0]), 1e-5, &format!("{what}: loss"));
            assert_close(&vals(&g1[0]), &vals(&g2[0]), 1e-5, &format!("{what}: dx"));
            if weighted {
                assert_close(&vals(&g1[1]), &vals(&g2[1]), 1e-4, &format!("{what}: dw"));
                // Only the weight's gradient asked for; only x's (the weight frozen, as in LoRA).
                let (_, gw) = mlx::value_and_grad(f_ours, &[&x, &w], &[1]).unwrap();
                assert_close(&vals(&gw[0]), &vals(&g2[1]), 1e-4, &format!("{what}: dw alone"));
                let (_, gx) = mlx::value_and_grad(f_ours, &[&x, &w], &[0]).unwrap();
                assert_close(&vals(&gx[0]), &vals(&g2[0]), 1e-5, &format!("{what}: dx alone"));
            }
        }
    }
}

#[test]
fn other_dtypes_come_back_in_their_own_and_bad_weights_are_errors() {
    let (x, _) = rand_arr(&[4, 64], 7);
    let (w, _) = rand_arr(&[64], 8);
    let b = |a: &Array| a.as_type(Dtype::Bfloat16).unwrap();
    let y16 = rms_norm_cpu(&b(&x), Some(&b(&w)), 1e-6).unwrap();
    assert_eq!(y16.dtype(), Dtype::Bfloat16);
    let y32 = rms_norm_cpu(&b(&x).as_type(Dtype::Float32).unwrap(), Some(&b(&w).as_type(Dtype::Float32).unwrap()), 1e-6).unwrap();
    assert_close(&vals(&y16), &vals(&y32), 1e-2, "bfloat16");
    let (w2, _) = rand_arr(&[32], 9);
    let e = rms_norm_cpu(&x, Some(&w2), 1e-6).unwrap_err().to_string();
    assert!(e.contains("does not match the last axis"), "{e}");
}
