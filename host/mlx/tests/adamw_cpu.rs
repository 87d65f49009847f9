//! The fused AdamW primitive (bridge_adamw.cpp) against a plain f64 implementation in the test
//! and against the same update written with MLX's ops, over several updates of parameters of
//! different shapes at once (a LoRA-like list), with bf16 gradients, weight decay, a strided
//! parameter; and its errors.

mod common;
use common::*;
use mlx::optimizers::{adamw_cpu, AdamWStep};
use mlx::{Array, Dtype};

fn step_scalars(t: i32, lr: f32, wd: f32) -> AdamWStep {
    let (b1, b2) = (0.9f32, 0.999f32);
    AdamWStep { lr_hat: lr / (1.0 - b1.powi(t)), v_scale: 1.0 / (1.0 - b2.powi(t)).sqrt(), b1, b2, eps: 1e-8, decay: 1.0 - lr * wd }
}

/// MLX's composed form of the same update (the order of host/train/src/optim.rs).
fn composed(p: &Array, g: &Array, m: &Array, v: &Array, s: AdamWStep) -> (Array, Array, Array) {
    let g = g.as_type(Dtype::Float32).unwrap();
    let m2 = m.mul(s.b1).unwrap().add(&g.mul(1.0 - s.b1).unwrap()).unwrap();
    let v2 = v.mul(s.b2).unwrap().add(&g.square().unwrap().mul(1.0 - s.b2).unwrap()).unwrap();
    let denom = v2.sqrt().unwrap().mul(s.v_scale).unwrap().add(s.eps).unwrap();
    let p2 = p.mul(s.decay).unwrap().sub(&m2.mul(s.lr_hat).unwrap().div(&denom).unwrap()).unwrap();
    (p2, m2, v2)
}

#[test]
fn matches_plain_f64_and_composed_ops_over_several_updates() {
    let shapes: [&[i32]; 4] = [&[576, 8], &[8, 192], &[3], &[5, 7, 2]];
    let mut p: Vec<Array> = shapes
        .iter().enumerate().map(|(i, s)| rand_arr(s, 10 + i as u64).0).collect();
    // A strided parameter (a transposed view) must be read by its strides.
    p[1] = rand_arr(&[192, 8], 20).0.transpose(&[1, 0]).unwrap();
    let mut m: Vec<Array> = p.iter().map(|a| a.zeros_like().unwrap()).collect();
    let mut v = m.clone();
    let (mut pc, mut mc, mut vc) = (p.clone(), m.clone(), v.clone());
    let mut refs: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = p.iter().map(|a| (vals(a).iter().map(|&x| x as f64).collect(), vec![0.0; a.size()], vec![0.0; a.size()])).collect();
    for t in 1..=4 {
        let s = step_scalars(t, 1e-2, if t % 2 == 0 { 0.05 } else { 0.0 });
        let g: Vec<Array> = (0..p.len())
            .map(|i| {
                let g = rand_arr(&p[i].shape(), 100 * t as u64 + i as u64).0.mul(0.5 + i as f32).unwrap();
                // The third gradient in bf16: the primitive casts it.
                if i == 2 { g.as_type(Dtype::Bfloat16).unwrap() } else { g }
            })
            .collect();
        let (np, nm, nv) = adamw_cpu(&p, &g, &m, &v, s).unwrap();
        mlx::eval(np.iter().chain(&nm).chain(&nv)).unwrap();
        for i in 0..p.len() {
            let gv = vals(&g[i]);
            let (rp, rm, rv) = &mut refs[i];
            for j in 0..gv.len() {
                let gj = gv[j] as f64;
                rm[j] = s.b1 as f64 * rm[j] + (1.0 - s.b1 as f64) * gj;
                rv[j] = s.b2 as f64 * rv[j] + (1.0 - s.b2 as f64) * gj * gj;
                rp[j] = rp[j] * s.decay as f64 - s.lr_hat as f64 * rm[j] / (rv[j].sqrt() * s.v_scale as f64 + s.eps as f64);
            }
            assert_eq!(np[i].shape(), p[i].shape(), "update {t}, parameter {i}: shape");
            let f = |x: &[f64]| x.iter().map(|&y| y as f32).collect::<Vec<f32>>();
            assert_close(&vals(&np[i]), &f(rp), 2e-5, &format!("update {t}, parameter {i} vs f64"));
            assert_close(&vals(&nm[i]), &f(rm), 1e-5, &format!("update {t}, first moment {i} vs f64"));
            assert_close(&vals(&nv[i]), &f(rv), 1e-5, &format!("update {t}, second moment {i} vs f64"));
            let (cp, cm, cv) = composed(&pc[i], &g[i], &mc[i], &vc[i], s);
            assert_close(&vals(&np[i]), &vals(&cp), 1e-6, &format!("update {t}, parameter {i} vs composed"));
            (pc[i], mc[i], vc[i]) = (cp, cm, cv);
        }
        (p, m, v) = (np, nm, nv);
    }
    // The parameters moved (by ~lr per update): not two idle optimizers agreeing.
    let moved = vals(&p[0]).iter().zip(vals(&rand_arr(&[576, 8], 10).0)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(moved > 0.02, "parameters barely moved: {moved}");
}

#[test]
fn errors_name_the_mismatch() {
    let p = vec![rand_arr(&[4, 3], 1).0];
    let z = vec![p[0].zeros_like().unwrap()];
    let s = step_scalars(1, 1e-3, 0.0);
    let wrong = vec![rand_arr(&[3, 4], 2).0];
    let e = adamw_cpu(&p, &wrong, &z, &z, s).unwrap_err().to_string();
    assert!(e.contains("parameter 0") && e.contains("gradient"), "{e}");
    let e = adamw_cpu(&p, &z, &z, &[], s).unwrap_err().to_string();
    assert!(e.contains("1 parameters") && e.contains("0 second"), "{e}");
    let half = vec![p[0].as_type(Dtype::Float16).unwrap()];
    let e = adamw_cpu(&half, &z, &z, &z, s).unwrap_err().to_string();
    assert!(e.contains("float32"), "{e}");
    let (np, nm, nv) = adamw_cpu(&[], &[], &[], &[], s).unwrap();
    assert!(np.is_empty() && nm.is_empty() && nv.is_empty());
}
