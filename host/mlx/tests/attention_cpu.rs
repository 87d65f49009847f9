//! The bridge's fused CPU attention against a plain f64 implementation in the test (values) and
//! MLX's own composed `scaled_dot_product_attention` (values and the gradients w.r.t. q, k and v
//! by MLX's autodiff): grouped-query heads, causal masks aligned to the end (cached decoding),
//! one query row, no mask, long causal rows (blocked), strided keys and values (views of a cache and of a transpose), large
//! scores, other dtypes, chunked scratch, and shape errors.

mod common;
use common::*;
use mlx::fast::{attention_cpu, mlx_sdpa, SdpaMask};
use mlx::{Array, Dtype};

struct Case {
    b: usize,
    h: usize,
    kv: usize,
    l: usize,
    s: usize,
    d: usize,
}

/// Plain attention in f64 over row-major (B, H, L, D) q and (B, KV, S, D) k, v.
fn attention_ref(c: &Case, q: &[f32], k: &[f32], v: &[f32], scale: f32, causal: bool) -> Vec<f32> {
    let rep = c.h / c.kv;
    let mut out = vec![0f32; c.b * c.h * c.l * c.d];
    for b in 0..c.b {
        for h in 0..c.h {
            let g = h / rep;
            for i in 0..c.l {
                let qi = &q[((b * c.h + h) * c.l + i) * c.d..][..c.d];
                let lim = if causal { (i + 1 + c.s - c.l).min(c.s) } else { c.s };
                let scores: Vec<f64> = (0..lim)
                    .map(|j| {
                        let kj = &k[((b * c.kv + g) * c.s + j) * c.d..][..c.d];
                        qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale as f64
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for t in 0..c.d {
                    let acc: f64 = (0..lim).map(|j| e[j] / sum * v[((b * c.kv + g) * c.s + j) * c.d + t] as f64).sum();
                    out[((b * c.h + h) * c.l + i) * c.d + t] = acc as f32;
                }
            }
        }
    }
    out
}

fn shape(c: &Case) -> ([i32; 4], [i32; 4]) {
    ([c.b as i32, c.h as i32, c.l as i32, c.d as i32], [c.b as i32, c.kv as i32, c.s as i32, c.d as i32])
}

/// Fused vs the plain reference (values) and vs MLX's composed attention (values, gradients).
fn check(c: Case, causal: bool, amplitude: f32, seed: u64) {
    let (qs, ks) = shape(&c);
    let (q, qv) = rand_arr(&qs, seed);
    let (q, qv) = (q.mul(amplitude).unwrap(), qv.iter().map(|x| x * amplitude).collect::<Vec<_>>());
    let (k, kv) = rand_arr(&ks, seed + 1);
    let (v, vv) = rand_arr(&ks, seed + 2);
    let (cot, _) = rand_arr(&qs, seed + 3);
    let scale = 1.0 / (c.d as f32).sqrt();
    let what = format!("B{} H{} KV{} L{} S{} D{} causal {causal}", c.b, c.h, c.kv, c.l, c.s, c.d);
    let fused = attention_cpu(&q, &k, &v, scale, causal).unwrap();
    assert_eq!(fused.shape(), qs.to_vec());
    assert_close(&vals(&fused), &attention_ref(&c, &qv, &kv, &vv, scale, causal), 2e-5, &format!("{what}: values"));
    let mask = if causal { SdpaMask::Causal } else { SdpaMask::None };
    let loss_fused = |a: &[Array]| Ok(vec![attention_cpu(&a[0], &a[1], &a[2], scale, causal)?.mul(&cot)?.sum_all()?]);
    let loss_mlx = |a: &[Array]| Ok(vec![mlx_sdpa(&a[0], &a[1], &a[2], scale, mask)?.mul(&cot)?.sum_all()?]);
    let (l1, g1) = mlx::value_and_grad(loss_fused, &[&q, &k, &v], &[0, 1, 2]).unwrap();
    let (l2, g2) = mlx::value_and_grad(loss_mlx, &[&q, &k, &v], &[0, 1, 2]).unwrap();
    assert_close(&vals(&l1[0]), &vals(&l2[0]), 1e-4, &format!("{what}: loss"));
    for (i, name) in ["dq", "dk", "dv"].iter().enumerate() {
        assert_eq!(g1[i].shape(), g2[i].shape(), "{what}: {name} shape");
        assert_close(&vals(&g1[i]), &vals(&g2[i]), 1e-4, &format!("{what}: {name}"));
    }
}

#[test]
fn fused_attention_matches_a_plain_implementation_and_mlx_gradients() {
    // Grouped heads (3 per KV head), a training-like causal square.
    check(Case { b: 2, h: 6, kv: 2, l: 37, s: 37, d: 64 }, true, 1.0, 10);
    // Fewer queries than keys: the mask is aligned to the end (a prompt after a cached prefix).
    check(Case { b: 1, h: 4, kv: 1, l: 5, s: 43, d: 32 }, true, 1.0, 20);
    // One query row (decoding), and no mask at all.
    check(Case { b: 2, h: 2, kv: 2, l: 1, s: 50, d: 16 }, true, 1.0, 30);
    check(Case { b: 1, h: 4, kv: 2, l: 9, s: 23, d: 8 }, false, 1.0, 40);
    // Rows long enough for several threads and AVX2 tails; scores up to ~±60.
    check(Case { b: 1, h: 2, kv: 1, l: 203, s: 203, d: 128 }, true, 8.0, 50);
    // Causal rows past 256 go in row blocks that skip the masked keys (also after a prefix).
    check(Case { b: 2, h: 4, kv: 2, l: 300, s: 300, d: 16 }, true, 1.0, 60);
    check(Case { b: 1, h: 2, kv: 1, l: 520, s: 540, d: 8 }, true, 1.0, 70);
}

#[test]
fn strided_keys_and_values_are_read_in_place() {
    let c = Case { b: 2, h: 4, kv: 2, l: 6, s: 11, d: 16 };
    let scale = 0.3;
    let (q, qv) = rand_arr(&[2, 4, 6, 16], 60);
    // k as a transpose of (B, S, KV, D): rows D apart per head, KV * D apart per position.
    let (kt, _) = rand_arr(&[2, 11, 2, 16], 61);
    let k = kt.transpose(&[0, 2, 1, 3]).unwrap();
    // v as the first 11 positions of a 32-position cache.
    let (cache, _) = rand_arr(&[2, 2, 32, 16], 62);
    let v = cache.slice(&[0, 0, 0, 0], &[2, 2, 11, 16], &[1, 1, 1, 1]).unwrap();
    // and keys whose feature axis is not contiguous (packed by the kernel first).
    let (kf, _) = rand_arr(&[2, 2, 16, 11], 63);
    let k2 = kf.swapaxes(-1, -2).unwrap();
    for (k, name) in [(&k, "transposed k"), (&k2, "k with strided features")] {
        let (kv, vv) = (vals(k), vals(&v));
        let fused = attention_cpu(&q, k, &v, scale, true).unwrap();
        assert_close(&vals(&fused), &attention_ref(&c, &qv, &kv, &vv, scale, true), 2e-5, name);
        let (_, g1) = mlx::value_and_grad(|a: &[Array]| Ok(vec![attention_cpu(&a[0], &a[1], &a[2], scale, true)?.sum_all()?]), &[&q, k, &v], &[1, 2]).unwrap();
        let (_, g2) = mlx::value_and_grad(|a: &[Array]| Ok(vec![mlx_sdpa(&a[0], &a[1], &a[2], scale, SdpaMask::Causal)?.sum_all()?]), &[&q, k, &v], &[1, 2]).unwrap();
        assert_close(&vals(&g1[0]), &vals(&g2[0]), 1e-4, &format!("{name}: dk"));
        assert_close(&vals(&g1[1]), &vals(&g2[1]), 1e-4, &format!("{name}: dv"));
    }
}

#[test]
fn other_dtypes_come_back_in_their_own_and_bad_shapes_are_errors() {
    let (q, _) = rand_arr(&[1, 4, 8, 16], 70);
    let (k, _) = rand_arr(&[1, 2, 8, 16], 71);
    let (v, _) = rand_arr(&[1, 2, 8, 16], 72);
    let b = |a: &Array| a.as_type(Dtype::Bfloat16).unwrap();
    let o16 = attention_cpu(&b(&q), &b(&k), &b(&v), 0.25, true).unwrap();
    assert_eq!(o16.dtype(), Dtype::Bfloat16);
    let o32 = attention_cpu(&b(&q).as_type(Dtype::Float32).unwrap(), &b(&k).as_type(Dtype::Float32).unwrap(), &b(&v).as_type(Dtype::Float32).unwrap(), 0.25, true).unwrap();
    assert_close(&vals(&o16), &vals(&o32), 1e-2, "bfloat16");
    let (k3, _) = rand_arr(&[1, 3, 8, 16], 73);
    let e = attention_cpu(&q, &k3, &k3, 0.25, true).unwrap_err().to_string();
    assert!(e.contains("multiple of KV heads"), "{e}");
    let e = attention_cpu(&q, &k, &k3, 0.25, true).unwrap_err().to_string();
    assert!(e.contains("k and v differ"), "{e}");
    let (short, _) = rand_arr(&[1, 2, 4, 16], 74);
    let e = attention_cpu(&q, &short, &short, 0.25, true).unwrap_err().to_string();
    assert!(e.contains("at least as many keys"), "{e}");
    let e = attention_cpu(&q.reshape(&[4, 8, 16]).unwrap(), &k, &v, 0.25, true).unwrap_err().to_string();
    assert!(e.contains("(B, heads, L, D)"), "{e}");
}
