mod common;
use common::*;
use mlx::fast::{self, SdpaMask};
use mlx::{Array, Dtype, Error};

#[test]
fn creation_and_host_roundtrip() {
    let z = mlx::zeros(&[2, 3], Dtype::Float32).unwrap();
    assert_eq!(z.shape(), vec![2, 3]);
    assert_eq!(z.dtype(), Dtype::Float32);
    assert_eq!(z.size(), 6);
    assert_eq!(vals(&z), vec![0.0; 6]);
    assert_eq!(vals(&mlx::ones(&[2], Dtype::Bfloat16).unwrap()), vec![1.0, 1.0]);
    assert_eq!(mlx::full(&[2], 7.0, Dtype::Int32).unwrap().to_vec::<i32>().unwrap(), vec![7, 7]);
    let r = mlx::arange(0.0, 5.0, 1.0, Dtype::Int32).unwrap();
    assert_eq!(r.to_vec::<i32>().unwrap(), vec![0, 1, 2, 3, 4]);
    let u = Array::from_slice(&[1u32, 2, 3], &[3]).unwrap();
    assert_eq!(u.to_vec::<u32>().unwrap(), vec![1, 2, 3]);
    let b = Array::from_slice(&[true, false], &[2]).unwrap();
    assert_eq!(b.to_vec::<bool>().unwrap(), vec![true, false]);
    let h = Array::from_slice(&[mlx::f16::from_f32(1.5)], &[1]).unwrap();
    assert_eq!(h.as_type(Dtype::Float32).unwrap().item::<f32>().unwrap(), 1.5);
    let s = Array::scalar(3.0f32).unwrap();
    assert_eq!(s.ndim(), 0);
    assert_eq!(s.item::<f32>().unwrap(), 3.0);
    // a transposed view reads back in logical (row-major) order
    let m = arr(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(vals(&m.transpose(&[1, 0]).unwrap()), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert!(Array::from_slice(&[1.0f32; 5], &[2, 3]).is_err());
    assert!(matches!(m.to_vec::<i32>(), Err(Error::InvalidArgument(_))));
    assert_eq!(m.to_bytes().unwrap().len(), 24);
    assert!(format!("{m}").contains("array"));
}

#[test]
fn bad_shapes_are_errors_with_mlx_message() {
    let a = rand_arr(&[2, 3], 1).0;
    let b = rand_arr(&[4, 5], 2).0;
    match a.matmul(&b) {
        Err(Error::Exception(m)) => assert!(m.contains("matmul"), "{m}"),
        other => panic!("expected an MLX exception, got {other:?}"),
    }
    match a.add(&b) {
        Err(Error::Exception(m)) => assert!(m.contains("broadcast"), "{m}"),
        other => panic!("expected an MLX exception, got {other:?}"),
    }
    assert!(a.reshape(&[7]).is_err());
    assert!(a.take(&Array::from_slice(&[0i32], &[1]).unwrap(), 5).is_err());
    assert!(fast::rms_norm(&a, Some(&rand_arr(&[5], 3).0), 1e-5).is_err());
    // the thread goes on working after errors
    assert_eq!(a.sum_all().unwrap().size(), 1);
}

#[test]
fn matmul_matches_reference() {
    let (a, av) = rand_arr(&[17, 33], 1);
    let (b, bv) = rand_arr(&[33, 9], 2);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), vec![17, 9]);
    assert_close(&vals(&c), &matmul_ref(&av, &bv, 17, 33, 9), 1e-5, "matmul");
    // addmm and linear (x @ w.T + bias)
    let (bias, biasv) = rand_arr(&[9], 3);
    let bt = b.transpose(&[1, 0]).unwrap();
    let lin = a.linear(&bt, Some(&bias)).unwrap();
    let want: Vec<f32> = matmul_ref(&av, &bv, 17, 33, 9).iter().enumerate().map(|(i, v)| v + biasv[i % 9]).collect();
    assert_close(&vals(&lin), &want, 1e-5, "linear");
    let two = mlx::addmm(&c, &a, &b, 2.0, 0.5).unwrap();
    let want: Vec<f32> = matmul_ref(&av, &bv, 17, 33, 9).iter().map(|v| 2.5 * v).collect();
    assert_close(&vals(&two), &want, 1e-5, "addmm");
}

/// addmm with a batched `a` and one matrix `b` (folded into rows, see `mlx::addmm`): values
/// for every form of `c` against a plain product in the test, gradients against MLX's autodiff
/// of `alpha * a @ b + beta * c` written with matmul and add.
#[test]
fn batched_addmm_matches_reference_and_gradients() {
    let (bsz, l, k, n) = (3, 5, 7, 4);
    let (a, av) = rand_arr(&[bsz, l, k], 11);
    let (b, bv) = rand_arr(&[k, n], 12);
    let prod = matmul_ref(&av, &bv, (bsz * l) as usize, k as usize, n as usize);
    for (cshape, seed) in [(vec![bsz, l, n], 13), (vec![n], 14), (vec![1, n], 15), (vec![bsz, 1, n], 16), (vec![l, n], 17)] {
        let (c, cv) = rand_arr(&cshape, seed);
        let got = mlx::addmm(&c, &a, &b, 2.0, 0.5).unwrap();
        assert_eq!(got.shape(), vec![bsz, l, n], "c {cshape:?}");
        let cat = |row: usize, j: usize| -> f32 {
            let (bi, li) = (row / l as usize, row % l as usize);
            match cshape.as_slice() {
                [_, _, _] if cshape[1] == 1 => cv[bi * n as usize + j],
                [_, _, _] => cv[row * n as usize + j],
                [_] => cv[j],
                [1, _] => cv[j],
                _ => cv[li * n as usize + j],
            }
        };
        let want: Vec<f32> = (0..prod.len()).map(|i| 2.0 * prod[i] + 0.5 * cat(i / n as usize, i % n as usize)).collect();
        assert_close(&vals(&got), &want, 1e-5, &format!("batched addmm, c {cshape:?}"));
        let folded = |p: &[Array]| Ok(vec![mlx::addmm(&p[2], &p[0], &p[1], 2.0, 0.5)?.square()?.sum_all()?]);
        let composed = |p: &[Array]| Ok(vec![p[0].matmul(&p[1])?.mul(2.0)?.add(&p[2].mul(0.5)?)?.square()?.sum_all()?]);
        let (_, g1) = mlx::transforms::value_and_grad(folded, &[&a, &b, &c], &[0, 1, 2]).unwrap();
        let (_, g2) = mlx::transforms::value_and_grad(composed, &[&a, &b, &c], &[0, 1, 2]).unwrap();
        for (i, (x, y)) in g1.iter().zip(&g2).enumerate() {
            assert_eq!(x.shape(), y.shape(), "gradient {i} shape, c {cshape:?}");
            assert_close(&vals(x), &vals(y), 1e-5, &format!("gradient {i}, c {cshape:?}"));
        }
    }
}

#[test]
fn elementwise() {
    let x = arr(&[-2.0, -0.5, 0.0, 0.5, 3.0], &[5]);
    let xv = vals(&x);
    let check = |a: Array, f: fn(f32) -> f32, what: &str| {
        let want: Vec<f32> = xv.iter().map(|&v| f(v)).collect();
        let got = vals(&a);
        for (g, w) in got.iter().zip(&want) {
            let ok = g == w || (g - w).abs() <= 1e-5 * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
            assert!(ok, "{what}: {got:?} vs {want:?}");
        }
    };
    check(x.neg().unwrap(), |v| -v, "neg");
    check(x.exp().unwrap(), f32::exp, "exp");
    check(x.abs().unwrap().log().unwrap(), |v| v.abs().ln(), "log");
    check(x.abs().unwrap().sqrt().unwrap(), |v| v.abs().sqrt(), "sqrt");
    check(x.square().unwrap(), |v| v * v, "square");
    check(x.sigmoid().unwrap(), |v| 1.0 / (1.0 + (-v).exp()), "sigmoid");
    check(x.silu().unwrap(), |v| v / (1.0 + (-v).exp()), "silu");
    check(x.tanh().unwrap(), f32::tanh, "tanh");
    check(x.sin().unwrap(), f32::sin, "sin");
    check(x.cos().unwrap(), f32::cos, "cos");
    check(x.maximum(0.0f32).unwrap(), |v| v.max(0.0), "maximum");
    check(x.minimum(0.0f32).unwrap(), |v| v.min(0.0), "minimum");
    check(x.abs().unwrap().power(2.0f32).unwrap(), |v| v * v, "power");
    check(x.clip_scalar(-1.0, 1.0).unwrap(), |v| v.clamp(-1.0, 1.0), "clip");
    check(x.mul(2.0f32).unwrap().sub(1.0f32).unwrap().div(4.0f32).unwrap(), |v| (2.0 * v - 1.0) / 4.0, "arith");
    check(&(&x * &x) - &x, |v| v * v - v, "operators");
    let gt = x.gt(0.0f32).unwrap();
    assert_eq!(gt.to_vec::<bool>().unwrap(), vec![false, false, false, true, true]);
    let le = x.le(0.0f32).unwrap();
    assert!(!gt.logical_and(&le).unwrap().any_all().unwrap().item::<bool>().unwrap());
    assert!(gt.logical_or(&le).unwrap().all_all().unwrap().item::<bool>().unwrap());
    let w = mlx::where_(&gt, &x, &x.zeros_like().unwrap()).unwrap();
    assert_eq!(vals(&w), vec![0.0, 0.0, 0.0, 0.5, 3.0]);
    let nan = arr(&[f32::NAN, f32::INFINITY, 1.0], &[3]);
    assert_eq!(nan.isnan().unwrap().to_vec::<bool>().unwrap(), vec![true, false, false]);
    assert_eq!(nan.isinf().unwrap().to_vec::<bool>().unwrap(), vec![false, true, false]);
    // a float scalar keeps a bf16 array in bf16
    let xb = x.as_type(Dtype::Bfloat16).unwrap();
    assert_eq!(xb.mul(0.5f32).unwrap().dtype(), Dtype::Bfloat16);
}

fn softmax_ref(row: &[f32]) -> Vec<f32> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let s: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
    row.iter().map(|&v| (((v - m) as f64).exp() / s) as f32).collect()
}

fn lse_ref(row: &[f32]) -> f32 {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    (m as f64 + row.iter().map(|&v| ((v - m) as f64).exp()).sum::<f64>().ln()) as f32
}

#[test]
fn reductions_softmax_logsumexp() {
    let (x, xv) = rand_arr(&[6, 50], 7);
    let x = x.mul(10.0f32).unwrap();
    let xv: Vec<f32> = xv.iter().map(|v| v * 10.0).collect();
    let sm = vals(&x.softmax(&[-1], true).unwrap());
    let lse = vals(&x.logsumexp(&[-1], false).unwrap());
    for r in 0..6 {
        let row = &xv[r * 50..(r + 1) * 50];
        assert_close(&sm[r * 50..(r + 1) * 50], &softmax_ref(row), 1e-5, "softmax");
        assert!((lse[r] - lse_ref(row)).abs() < 1e-4, "logsumexp");
    }
    let s = vals(&x.sum(&[1], true).unwrap());
    assert_eq!(x.sum(&[1], true).unwrap().shape(), vec![6, 1]);
    for r in 0..6 {
        let want: f32 = xv[r * 50..(r + 1) * 50].iter().sum();
        assert!((s[r] - want).abs() < 1e-3);
    }
    let mean = x.mean_all().unwrap().item::<f32>().unwrap();
    assert!((mean - xv.iter().sum::<f32>() / 300.0).abs() < 1e-4);
    let am = x.argmax(Some(1), false).unwrap().to_vec::<u32>().unwrap();
    for r in 0..6 {
        let row = &xv[r * 50..(r + 1) * 50];
        let best = (0..50).max_by(|&a, &b| row[a].partial_cmp(&row[b]).unwrap()).unwrap();
        assert_eq!(am[r] as usize, best);
    }
    assert_eq!(x.max_all().unwrap().item::<f32>().unwrap(), xv.iter().cloned().fold(f32::MIN, f32::max));
    assert_eq!(x.min(&[0, 1], false).unwrap().item::<f32>().unwrap(), xv.iter().cloned().fold(f32::MAX, f32::min));
}

#[test]
fn shape_ops() {
    let x = mlx::arange(0.0, 24.0, 1.0, Dtype::Float32).unwrap().reshape(&[2, 3, 4]).unwrap();
    assert_eq!(x.transpose(&[2, 0, 1]).unwrap().shape(), vec![4, 2, 3]);
    assert_eq!(x.swapaxes(0, 2).unwrap().shape(), vec![4, 3, 2]);
    assert_eq!(x.expand_dims(&[0]).unwrap().shape(), vec![1, 2, 3, 4]);
    assert_eq!(x.expand_dims(&[0]).unwrap().squeeze(None).unwrap().shape(), vec![2, 3, 4]);
    assert_eq!(x.flatten(0, 1).unwrap().shape(), vec![6, 4]);
    assert_eq!(x.flatten_all().unwrap().shape(), vec![24]);
    let c = mlx::concatenate(&[&x, &x], 1).unwrap();
    assert_eq!(c.shape(), vec![2, 6, 4]);
    let st = mlx::stack(&[&x, &x, &x], 0).unwrap();
    assert_eq!(st.shape(), vec![3, 2, 3, 4]);
    let parts = x.split(2, 2).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(vals(&parts[1].slice(&[0, 0], &[1, 1], &[1, 1]).unwrap()), vec![2.0, 3.0]);
    let parts = x.split_at(&[1, 3], 2).unwrap();
    assert_eq!(parts.iter().map(|p| p.dim(2)).collect::<Vec<_>>(), vec![1, 2, 1]);
    let sl = x.slice(&[1, 0, 0], &[2, 3, 4], &[1, 2, 3]).unwrap();
    assert_eq!(sl.shape(), vec![1, 2, 2]);
    assert_eq!(vals(&sl), vec![12.0, 15.0, 20.0, 23.0]);
    assert_eq!(vals(&x.slice_axis(-1, 1, 2).unwrap()).len(), 6);
    let b = arr(&[1.0, 2.0], &[2, 1]).broadcast_to(&[2, 3]).unwrap();
    assert_eq!(vals(&b), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    let upd = x.slice_update(&mlx::zeros(&[1, 3, 4], Dtype::Float32).unwrap(), &[0], &[1], &[1]).unwrap();
    assert_eq!(upd.sum_all().unwrap().item::<f32>().unwrap(), (12..24).sum::<i32>() as f32);
}

#[test]
fn indexing() {
    let emb = mlx::arange(0.0, 12.0, 1.0, Dtype::Float32).unwrap().reshape(&[4, 3]).unwrap();
    let ids = Array::from_slice(&[3i32, 0, 3], &[1, 3]).unwrap();
    let e = emb.take(&ids, 0).unwrap();
    assert_eq!(e.shape(), vec![1, 3, 3]);
    assert_eq!(vals(&e), vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 9.0, 10.0, 11.0]);
    let idx = Array::from_slice(&[2i32, 0, 1, 1], &[4, 1]).unwrap();
    let g = emb.take_along_axis(&idx, 1).unwrap();
    assert_eq!(vals(&g), vec![2.0, 3.0, 7.0, 10.0]);
    let p = emb.put_along_axis(&idx, &mlx::full(&[4, 1], -1.0, Dtype::Float32).unwrap(), 1).unwrap();
    assert_eq!(vals(&p)[..6], [0.0, 1.0, -1.0, -1.0, 4.0, 5.0]);
    let m = mlx::ones(&[3, 3], Dtype::Float32).unwrap();
    assert_eq!(vals(&m.tril(0).unwrap()), vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(vals(&m.triu(1).unwrap()), vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(vals(&mlx::tri(2, 3, 0, Dtype::Float32).unwrap()), vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
}

fn rms_norm_ref(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    x.chunks(d)
        .flat_map(|row| {
            let ms: f32 = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let r = 1.0 / (ms + eps).sqrt();
            row.iter().zip(w).map(move |(v, w)| v * r * w).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn rms_norm_and_layer_norm() {
    let (x, xv) = rand_arr(&[2, 5, 16], 11);
    let (w, wv) = rand_arr(&[16], 12);
    let y = fast::rms_norm(&x, Some(&w), 1e-6).unwrap();
    assert_close(&vals(&y), &rms_norm_ref(&xv, &wv, 1e-6), 1e-5, "rms_norm");
    let ln = fast::layer_norm(&x, None, None, 1e-5).unwrap();
    let lv = vals(&ln);
    for row in lv.chunks(16) {
        let mean: f32 = row.iter().sum::<f32>() / 16.0;
        let var: f32 = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 16.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "layer_norm {mean} {var}");
    }
}

/// Non-traditional (rotate-half) RoPE over (B, H, L, D).
fn rope_ref(x: &[f32], l: usize, d: usize, base: f32, offset: usize) -> Vec<f32> {
    let half = d / 2;
    let mut out = x.to_vec();
    for (blk, chunk) in x.chunks(l * d).enumerate() {
        for p in 0..l {
            let pos = (p + offset) as f64;
            for i in 0..half {
                let theta = pos * (base as f64).powf(-(2.0 * i as f64) / d as f64);
                let (s, c) = theta.sin_cos();
                let a = chunk[p * d + i] as f64;
                let b = chunk[p * d + i + half] as f64;
                out[blk * l * d + p * d + i] = (a * c - b * s) as f32;
                out[blk * l * d + p * d + i + half] = (a * s + b * c) as f32;
            }
        }
    }
    out
}

#[test]
fn rope_matches_reference() {
    let (x, xv) = rand_arr(&[1, 2, 7, 8], 21);
    for (base, offset) in [(10000.0f32, 0), (1_000_000.0, 5)] {
        let y = fast::rope(&x, 8, false, base, 1.0, offset as i32).unwrap();
        assert_close(&vals(&y), &rope_ref(&xv, 7, 8, base, offset), 1e-4, "rope");
        let off = Array::scalar(offset as i32).unwrap();
        let y2 = fast::rope_with_offset_array(&x, 8, false, base, 1.0, &off).unwrap();
        assert_close(&vals(&y2), &rope_ref(&xv, 7, 8, base, offset), 1e-4, "rope (array offset)");
    }
}

/// (B, Hq, L, D) x (B, Hkv, S, D) attention with GQA and an optional causal mask.
#[allow(clippy::too_many_arguments)]
fn sdpa_ref(q: &[f32], k: &[f32], v: &[f32], hq: usize, hkv: usize, l: usize, s: usize, d: usize, scale: f32, causal: bool, add_mask: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0f32; hq * l * d];
    for h in 0..hq {
        let kh = h / (hq / hkv);
        for i in 0..l {
            let mut scores = vec![0f32; s];
            for j in 0..s {
                let mut acc = 0f32;
                for t in 0..d {
                    acc += q[(h * l + i) * d + t] * k[(kh * s + j) * d + t];
                }
                scores[j] = acc * scale;
                if let Some(m) = add_mask {
                    scores[j] += m[i * s + j];
                }
                if causal && j > i + (s - l) {
                    scores[j] = f32::NEG_INFINITY;
                }
            }
            let p = softmax_ref(&scores);
            for t in 0..d {
                out[(h * l + i) * d + t] = (0..s).map(|j| p[j] * v[(kh * s + j) * d + t]).sum();
            }
        }
    }
    out
}

#[test]
fn sdpa_matches_reference() {
    let (hq, hkv, l, d) = (4usize, 2usize, 6usize, 8usize);
    let (q, qv) = rand_arr(&[1, hq as i32, l as i32, d as i32], 31);
    let (k, kv) = rand_arr(&[1, hkv as i32, l as i32, d as i32], 32);
    let (v, vv) = rand_arr(&[1, hkv as i32, l as i32, d as i32], 33);
    let scale = 1.0 / (d as f32).sqrt();
    let causal = fast::scaled_dot_product_attention(&q, &k, &v, scale, SdpaMask::Causal).unwrap();
    assert_close(&vals(&causal), &sdpa_ref(&qv, &kv, &vv, hq, hkv, l, l, d, scale, true, None), 1e-5, "sdpa causal");
    let none = fast::scaled_dot_product_attention(&q, &k, &v, scale, SdpaMask::None).unwrap();
    assert_close(&vals(&none), &sdpa_ref(&qv, &kv, &vv, hq, hkv, l, l, d, scale, false, None), 1e-5, "sdpa");
    let (m, mv) = rand_arr(&[l as i32, l as i32], 34);
    let masked = fast::scaled_dot_product_attention(&q, &k, &v, scale, SdpaMask::Array(&m)).unwrap();
    assert_close(&vals(&masked), &sdpa_ref(&qv, &kv, &vv, hq, hkv, l, l, d, scale, false, Some(&mv)), 1e-5, "sdpa mask");
    // a boolean mask equal to the causal one
    let bm = mlx::ones(&[l as i32, l as i32], Dtype::Bool).unwrap().tril(0).unwrap();
    let bmasked = fast::scaled_dot_product_attention(&q, &k, &v, scale, SdpaMask::Array(&bm)).unwrap();
    assert_close(&vals(&bmasked), &vals(&causal), 1e-6, "sdpa bool mask");
}

#[test]
fn quantize_dequantize_error_bounds() {
    let (w, wv) = rand_arr(&[32, 128], 41);
    for bits in [4, 8] {
        let q = mlx::quantized::quantize(&w, 64, bits).unwrap();
        assert_eq!(q.weight.dtype(), Dtype::Uint32);
        assert_eq!(q.weight.shape(), vec![32, 128 * bits / 32]);
        assert_eq!(q.scales.shape(), vec![32, 2]);
        let dq = vals(&q.dequantize().unwrap());
        let levels = ((1 << bits) - 1) as f32;
        for (g, (a, b)) in wv.chunks(64).zip(dq.chunks(64)).enumerate() {
            let (lo, hi) = a.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let step = (hi - lo) / levels;
            // MLX's affine scheme makes the larger-magnitude edge exact, so the worst case is one
            // step rather than half of one; on average rounding costs about a quarter step.
            let err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            let mean = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / 64.0;
            assert!(err <= step * 1.01 + 1e-6, "{bits}-bit group {g}: err {err} > step {step}");
            assert!(mean <= step * 0.35, "{bits}-bit group {g}: mean err {mean} vs step {step}");
        }
        // quantized_matmul == x @ dequantize(w).T
        let (x, _) = rand_arr(&[5, 128], 42);
        let qm = q.matmul_t(&x).unwrap();
        let reference = x.matmul(q.dequantize().unwrap().transpose(&[1, 0]).unwrap()).unwrap();
        assert_close(&vals(&qm), &vals(&reference), 1e-4, "quantized_matmul");
    }
}

#[test]
fn random_numbers() {
    let k = mlx::random::key(7).unwrap();
    let a = mlx::random::normal(&[10000], Dtype::Float32, 0.0, 1.0, Some(&k)).unwrap();
    let b = mlx::random::normal(&[10000], Dtype::Float32, 0.0, 1.0, Some(&k)).unwrap();
    assert_eq!(vals(&a), vals(&b), "same key, same numbers");
    let v = vals(&a);
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
    assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "normal {mean} {var}");
    let keys = mlx::random::split(&k, 3).unwrap();
    assert_eq!(keys.shape(), vec![3, 2]);
    let u = vals(&mlx::random::uniform(2.0, 3.0, &[1000], Dtype::Float32, None).unwrap());
    assert!(u.iter().all(|&x| (2.0..3.0).contains(&x)));
    mlx::random::seed(3).unwrap();
    let p = Array::scalar(0.25f32).unwrap();
    let bern = mlx::random::bernoulli(&p, &[4000], None).unwrap();
    let frac = vals(&bern.as_type(Dtype::Float32).unwrap()).iter().sum::<f32>() / 4000.0;
    assert!((frac - 0.25).abs() < 0.04, "bernoulli {frac}");
    let logits = arr(&[0.0, 30.0, 0.0], &[1, 3]);
    let c = mlx::random::categorical(&logits, -1, None, None).unwrap();
    assert_eq!(c.to_vec::<u32>().unwrap(), vec![1]);
    let ri = mlx::random::randint(0, 5, &[100], Dtype::Int32, None).unwrap().to_vec::<i32>().unwrap();
    assert!(ri.iter().all(|&x| (0..5).contains(&x)));
}

#[test]
fn memory_and_devices() {
    let x = mlx::ones(&[1024, 1024], Dtype::Float32).unwrap();
    x.eval().unwrap();
    assert!(mlx::memory::active_memory().unwrap() >= 4 << 20);
    assert!(mlx::memory::peak_memory().unwrap() >= mlx::memory::active_memory().unwrap());
    mlx::memory::reset_peak_memory().unwrap();
    let _ = mlx::memory::cache_memory().unwrap();
    let prev = mlx::memory::set_memory_limit(8 << 30).unwrap();
    mlx::memory::set_memory_limit(prev).unwrap();
    mlx::memory::clear_cache().unwrap();
    let dev = mlx::device::default_device().unwrap();
    assert_eq!(dev.is_gpu(), mlx::device::is_gpu_available().unwrap());
    let s = mlx::device::default_stream(dev).unwrap();
    assert_eq!(s.device, dev);
    mlx::device::synchronize().unwrap();
    assert_eq!(mlx::bridge_version().unwrap(), mlx::VERSION);
}

#[test]
fn fused_swiglu_matches_composed_ops_and_their_gradients() {
    // 70,003 elements: several threads' ranges and a scalar tail; values over a wide range.
    let (g, _) = rand_arr(&[7, 10_001], 41);
    let g = g.mul(8.0f32).unwrap();
    let (u, _) = rand_arr(&[7, 10_001], 42);
    let (c, _) = rand_arr(&[7, 10_001], 43);
    let fused = |a: &[Array]| Ok(vec![mlx::fast::swiglu(&a[0], &a[1])?.mul(&c)?.sum_all()?]);
    let composed = |a: &[Array]| Ok(vec![a[0].silu()?.mul(&a[1])?.mul(&c)?.sum_all()?]);
    let y = mlx::fast::swiglu(&g, &u).unwrap();
    assert_close(&vals(&y), &vals(&g.silu().unwrap().mul(&u).unwrap()), 1e-6, "forward");
    let (v1, g1) = mlx::value_and_grad(fused, &[&g, &u], &[0, 1]).unwrap();
    let (v2, g2) = mlx::value_and_grad(composed, &[&g, &u], &[0, 1]).unwrap();
    assert_close(&vals(&v1[0]), &vals(&v2[0]), 1e-5, "value");
    assert_close(&vals(&g1[0]), &vals(&g2[0]), 1e-5, "d gate");
    assert_close(&vals(&g1[1]), &vals(&g2[1]), 1e-6, "d up");
    // Only d up wanted; a bfloat16 gate comes back in bfloat16.
    let (_, gu) = mlx::value_and_grad(fused, &[&g, &u], &[1]).unwrap();
    assert_close(&vals(&gu[0]), &vals(&g2[1]), 1e-6, "d up alone");
    let y16 = mlx::fast::swiglu(&g.as_type(mlx::Dtype::Bfloat16).unwrap(), &u).unwrap();
    assert_eq!(y16.dtype(), mlx::Dtype::Bfloat16);
    let e = mlx::fast::swiglu(&g, &c.reshape(&[10_001, 7]).unwrap()).unwrap_err().to_string();
    assert!(e.contains("differ in shape"), "{e}");
}
