mod common;
use common::*;
use mlx::loss::{cross_entropy, cross_entropy_with_lse, target_log_probs, CeOptions, CePath};
use mlx::{Array, Dtype};

fn opts(path: CePath, chunk: Option<i32>) -> CeOptions<'static> {
    CeOptions { path, chunk, ..Default::default() }
}

fn setup(n: i32, h: i32, v: i32, seed: u64) -> (Array, Array, Array, Vec<i32>) {
    let (hid, _) = rand_arr(&[n, h], seed);
    let (w, _) = rand_arr(&[v, h], seed + 1);
    let w = w.mul(2.0f32).unwrap();
    let t: Vec<i32> = rand_vec(n as usize, seed + 2).iter().map(|x| ((x + 1.0) / 2.0 * v as f32) as i32 % v).collect();
    (hid, w, Array::from_slice(&t, &[n]).unwrap(), t)
}

#[test]
fn fused_matches_plain_rust_reference() {
    let (n, h, v) = (9, 8, 300);
    let (hid, w, t, tv) = setup(n, h, v, 1);
    let hv = vals(&hid);
    let wv = vals(&w);
    let (nll, lse) = cross_entropy_with_lse(&hid, &w, &t, opts(CePath::Fused, Some(64))).unwrap();
    let (nll, lse) = (vals(&nll), vals(&lse));
    for i in 0..n as usize {
        let logits: Vec<f64> = (0..v as usize)
            .map(|j| (0..h as usize).map(|k| hv[i * h as usize + k] as f64 * wv[j * h as usize + k] as f64).sum())
            .collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let l = m + logits.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        assert!((lse[i] as f64 - l).abs() < 1e-4 * l.abs().max(1.0), "lse row {i}");
        let want = l - logits[tv[i] as usize];
        assert!((nll[i] as f64 - want).abs() < 1e-4 * want.abs().max(1.0), "nll row {i}: {} vs {want}", nll[i]);
    }
}

#[test]
fn fused_matches_composed_values_and_gradients() {
    for &(n, h, v, chunk) in &[(13, 16, 1000, 128), (7, 32, 517, 4096), (64, 24, 2048, 300)] {
        let (hid, w, t, _) = setup(n, h, v, n as u64);
        let mask: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 }).collect();
        let mask = arr(&mask, &[n]);
        let run = |path: CePath| {
            mlx::value_and_grad(
                |a: &[Array]| {
                    let o = CeOptions { weights: Some(&mask), chunk: Some(chunk), path, compact: path == CePath::Fused };
                    let nll = cross_entropy(&a[0], &a[1], &t, o)?;
                    Ok(vec![nll.sum_all()?.div(mask.sum_all()?)?, nll])
                },
                &[&hid, &w],
                &[0, 1],
            )
            .unwrap()
        };
        let (fv, fg) = run(CePath::Fused);
        let (cv, cg) = run(CePath::Composed);
        assert_close(&vals(&fv[0]), &vals(&cv[0]), 1e-4, "loss");
        assert_close(&vals(&fv[1]), &vals(&cv[1]), 1e-4, "per-token nll");
        assert_eq!(fg[0].shape(), vec![n, h]);
        assert_eq!(fg[1].shape(), vec![v, h]);
        let rel = |a: &Array, b: &Array| {
            let (a, b) = (vals(a), vals(b));
            let scale = b.iter().map(|x| x.abs()).fold(0.0, f32::max);
            a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
        };
        assert!(rel(&fg[0], &cg[0]) < 1e-4, "d hidden: {}", rel(&fg[0], &cg[0]));
        assert!(rel(&fg[1], &cg[1]) < 1e-4, "d weight: {}", rel(&fg[1], &cg[1]));
        // masked rows get exactly zero gradient
        let dh = vals(&fg[0]);
        assert!(dh[..h as usize].iter().all(|&x| x == 0.0));
    }
}

#[test]
fn only_hidden_gradient_and_batched_shapes() {
    let (hid, w, t, _) = setup(12, 8, 700, 5);
    let hid3 = hid.reshape(&[3, 4, 8]).unwrap();
    let t2 = t.reshape(&[3, 4]).unwrap();
    let nll = cross_entropy(&hid3, &w, &t2, CeOptions::default()).unwrap();
    assert_eq!(nll.shape(), vec![3, 4]);
    let lp = target_log_probs(&hid3, &w, &t2, CeOptions::default()).unwrap();
    assert_close(&vals(&lp.neg().unwrap()), &vals(&nll), 1e-6, "log-probs");
    let f = |path| {
        mlx::value_and_grad(|a: &[Array]| Ok(vec![cross_entropy(&a[0], &w, &t2, opts(path, Some(100)))?.sum_all()?]), &[&hid3], &[0]).unwrap()
    };
    let (_, gf) = f(CePath::Fused);
    let (_, gc) = f(CePath::Composed);
    assert_eq!(gf[0].shape(), vec![3, 4, 8]);
    assert_close(&vals(&gf[0]), &vals(&gc[0]), 1e-4, "d hidden");
}

#[test]
fn lse_gradient_and_bf16_inputs() {
    // d/dh of sum(lse) (e.g. a z-loss) goes through the second output
    let (hid, w, t, _) = setup(5, 8, 333, 9);
    let g = |path| {
        mlx::value_and_grad(
            |a: &[Array]| {
                let (nll, lse) = cross_entropy_with_lse(&a[0], &w, &t, opts(path, Some(50)))?;
                Ok(vec![nll.sum_all()?.add(&lse.square()?.sum_all()?.mul(0.5f32)?)?])
            },
            &[&hid],
            &[0],
        )
        .unwrap()
        .1
    };
    assert_close(&vals(&g(CePath::Fused)[0]), &vals(&g(CePath::Composed)[0]), 1e-4, "lse grad");
    let hb = hid.as_type(Dtype::Bfloat16).unwrap();
    let wb = w.as_type(Dtype::Bfloat16).unwrap();
    let fb = cross_entropy(&hb, &wb, &t, opts(CePath::Fused, None)).unwrap();
    let f32_ = cross_entropy(&hb.as_type(Dtype::Float32).unwrap(), &wb.as_type(Dtype::Float32).unwrap(), &t, opts(CePath::Composed, None)).unwrap();
    assert_eq!(fb.dtype(), Dtype::Float32);
    assert_close(&vals(&fb), &vals(&f32_), 1e-4, "bf16 inputs");
    let (_, gb) = mlx::value_and_grad(|a: &[Array]| Ok(vec![cross_entropy(&a[0], &wb, &t, CeOptions::default())?.sum_all()?]), &[&hb], &[0]).unwrap();
    assert_eq!(gb[0].dtype(), Dtype::Bfloat16);
}

#[test]
fn fused_gradient_matches_finite_differences() {
    let (n, h, v) = (4, 6, 257);
    let (hid, w, t, _) = setup(n, h, v, 21);
    let hv = vals(&hid);
    let loss = |hd: &Array| cross_entropy(hd, &w, &t, opts(CePath::Fused, Some(64))).unwrap().sum_all().unwrap().item::<f32>().unwrap();
    let (_, g) = mlx::value_and_grad(|a: &[Array]| Ok(vec![cross_entropy(&a[0], &w, &t, opts(CePath::Fused, Some(64)))?.sum_all()?]), &[&hid], &[0]).unwrap();
    let g = vals(&g[0]);
    let eps = 1e-2f32;
    for i in 0..hv.len() {
        let mut p = hv.clone();
        p[i] += eps;
        let mut m = hv.clone();
        m[i] -= eps;
        let fd = (loss(&arr(&p, &[n, h])) - loss(&arr(&m, &[n, h]))) / (2.0 * eps);
        assert!((fd - g[i]).abs() <= 3e-3 * g[i].abs().max(0.3), "h[{i}]: fd {fd} vs {}", g[i]);
    }
}

#[test]
fn fused_shape_errors() {
    let (hid, w, t, _) = setup(4, 6, 50, 1);
    let bad_w = rand_arr(&[50, 7], 2).0;
    assert!(cross_entropy(&hid, &bad_w, &t, opts(CePath::Fused, None)).is_err());
    let bad_t = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    assert!(cross_entropy(&hid, &w, &bad_t, CeOptions::default()).is_err());
    assert!(mlx::loss::fused_kernel_has_blas().unwrap());
}

#[test]
fn compaction_skips_masked_rows_exactly() {
    let (hid, w, t, _) = setup(10, 8, 400, 31);
    let mask = arr(&[1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 2.0], &[10]);
    let g = |compact: bool, path: CePath| {
        mlx::value_and_grad(
            |a: &[Array]| {
                let o = CeOptions { weights: Some(&mask), compact, chunk: Some(128), path };
                let nll = cross_entropy(&a[0], &w, &t, o)?;
                Ok(vec![nll.sum_all()?, nll])
            },
            &[&hid],
            &[0],
        )
        .unwrap()
    };
    let (v1, g1) = g(true, CePath::Fused);
    let (v2, g2) = g(false, CePath::Composed);
    assert_close(&vals(&v1[1]), &vals(&v2[1]), 1e-4, "nll");
    assert_close(&vals(&g1[0]), &vals(&g2[0]), 1e-4, "d hidden");
    // everything masked: zero loss and zero gradient
    let zero = mlx::zeros(&[10], Dtype::Float32).unwrap();
    let (v, gz) = mlx::value_and_grad(
        |a: &[Array]| Ok(vec![cross_entropy(&a[0], &w, &t, CeOptions { weights: Some(&zero), ..Default::default() })?.sum_all()?]),
        &[&hid],
        &[0],
    )
    .unwrap();
    assert_eq!(v[0].item::<f32>().unwrap(), 0.0);
    assert!(vals(&gz[0]).iter().all(|&x| x == 0.0));
}

#[test]
fn concurrent_use_from_several_threads() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let (hid, w, t, _) = setup(16, 8, 300, 100 + i);
                let mut last = None;
                for _ in 0..5 {
                    let (v, g) = mlx::value_and_grad(
                        |a: &[Array]| Ok(vec![cross_entropy(&a[0], &w, &t, CeOptions::default())?.sum_all()?]),
                        &[&hid],
                        &[0],
                    )
                    .unwrap();
                    let cur = (v[0].item::<f32>().unwrap(), vals(&g[0]));
                    if let Some(prev) = &last {
                        assert_eq!(prev, &cur, "same inputs, same results");
                    }
                    last = Some(cur);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A bf16 output matrix under f32 hidden states (a model that multiplies its frozen matrices in
/// bf16, `mlx::bf16mm`): where the CPU has AVX-512 BF16 the fused kernel keeps the matrix bf16 and
/// rounds the hidden states to bf16 in its products. Checked against a plain f64 softmax of the
/// bf16-rounded hidden states: loss, d hidden (the LoRA case: the matrix frozen) and, with the
/// matrix traced too, d hidden and d matrix from the second sweep. Elsewhere the matrix is widened
/// to f32, which the same reference (at the hidden states' own values) also bounds.
#[test]
fn bf16_output_matrix_with_f32_hidden_states() {
    let (n, h, v) = (11usize, 40usize, 700usize);
    let (hid, w, t, tv) = setup(n as i32, h as i32, v as i32, 21);
    let wb = w.as_type(Dtype::Bfloat16).unwrap();
    let (hv, wv) = (vals(&hid), vals(&wb));
    let bf16 = mlx::bf16mm::is_available().unwrap();
    let round = |x: f32| if bf16 { mlx::bf16::from_f32(x).to_f32() } else { x };
    let hr: Vec<f32> = hv.iter().map(|&x| round(x)).collect();
    // f64 reference: per-row loss, d loss / d h, d loss / d w for loss = sum of NLLs.
    let (mut loss, mut dh, mut dw) = (0f64, vec![0f64; n * h], vec![0f64; v * h]);
    for i in 0..n {
        let logits: Vec<f64> = (0..v)
            .map(|j| (0..h).map(|k| hr[i * h + k] as f64 * wv[j * h + k] as f64).sum())
            .collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|x| (x - m).exp()).sum();
        loss += m + z.ln() - logits[tv[i] as usize];
        for j in 0..v {
            let g = (logits[j] - m).exp() / z - if j == tv[i] as usize { 1.0 } else { 0.0 };
            for k in 0..h {
                dh[i * h + k] += g * wv[j * h + k] as f64;
                dw[j * h + k] += g * hv[i * h + k] as f64;
            }
        }
    }
    let f = |a: &[Array]| Ok(vec![cross_entropy(&a[0], &a[1], &t, opts(CePath::Fused, Some(256)))?.sum_all()?]);
    let rel = |got: &[f32], want: &[f64]| {
        let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
        got.iter().zip(want).map(|(g, w)| (*g as f64 - w).abs()).fold(0f64, f64::max) / scale
    };
    // d hidden only: the forward pass's expectation sweep (probabilities rounded to bf16 there).
    let (out, g) = mlx::value_and_grad(f, &[&hid, &wb], &[0]).unwrap();
    let got = vals(&out[0])[0] as f64;
    assert!((got - loss).abs() < 1e-5 * loss.abs(), "loss {got} vs {loss}");
    let e = rel(&vals(&g[0]), &dh);
    assert!(e < 5e-3, "d hidden (expectation sweep): rel err {e}");
    // d hidden and d matrix: the backward sweep.
    let (_, g) = mlx::value_and_grad(f, &[&hid, &wb], &[0, 1]).unwrap();
    let e = rel(&vals(&g[0]), &dh);
    assert!(e < 5e-3, "d hidden (backward sweep): rel err {e}");
    let e = rel(&vals(&g[1]), &dw);
    assert!(e < 5e-3, "d matrix: rel err {e}");
}
