//! The learning-rate schedule and AdamW against MLX's own optimizers (mlx.optimizers in the
//! pinned reference environment), step by step: the rate each update uses equals
//! `join_schedules([linear_schedule(0, lr, warmup), cosine_decay(lr, total - warmup, min_lr)],
//! [warmup])` at MLX's step count, and the parameters after every update equal
//! `mlx.optimizers.AdamW(..., bias_correction=True).apply_gradients` given the same gradients.
//! Gradients are a fixed formula of the step, so both sides see the same numbers. AdamW runs both
//! three ways: the fused CPU primitive, the composed ops, and the composed ops compiled (the rates
//! change every update, so a compiled update that baked them in would drift). Two parameters of
//! different lengths, so each finds its own gradient and moments among the compiled inputs.

mod common;

use brain_train::optim::{AdamW, Schedule, ScheduleKind};
use common::run_reference;
use mlx::Array;
use serde_json::{json, Value};

/// The reference: MLX's schedule and AdamW driven by the same gradients; one JSON line.
const REFERENCE: &str = r#"
import json, math, sys
import mlx.core as mx
import mlx.optimizers as optim

cfg = json.loads(sys.argv[1])
base, warmup, total, min_lr, wd = cfg["base_lr"], cfg["warmup"], cfg["total"], cfg["min_lr"], cfg["weight_decay"]
cos = optim.cosine_decay(base, total - warmup, min_lr)
sched = optim.join_schedules([optim.linear_schedule(0.0, base, warmup), cos], [warmup]) if warmup > 0 else cos
rates = [sched(mx.array(k)).item() for k in range(total + 2)]

opt = optim.AdamW(learning_rate=sched, betas=[0.9, 0.999], eps=1e-8, weight_decay=wd, bias_correction=True)
params = {"w": mx.array(cfg["p0"], dtype=mx.float32), "u": mx.array(cfg["p0"][::-2], dtype=mx.float32)}
steps, used = [], []
n = len(cfg["p0"])
for t in range(1, total + 1):
    g = mx.array([math.sin(0.7 * t + 0.3 * i) * (1.0 + 0.1 * i) for i in range(n)], dtype=mx.float32)
    params = opt.apply_gradients({"w": g, "u": 2.0 * g[::-2]}, params)
    mx.eval(params)
    used.append(opt.learning_rate.item())
    steps.append([params["w"].tolist(), params["u"].tolist()])
print(json.dumps({"rates": rates, "used": used, "steps": steps}))
"#;

fn grad(t: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| ((0.7 * t as f64 + 0.3 * i as f64).sin() * (1.0 + 0.1 * i as f64)) as f32).collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-12
}

#[test]
fn schedule_and_adamw_equal_mlx_optimizers_step_by_step() {
    let p0: Vec<f32> = (0..12).map(|i| 0.5 - 0.09 * i as f32).collect();
    for (warmup, total, base_lr, min_lr, weight_decay) in [(0usize, 12usize, 1e-2f32, 0.0f32, 0.0f32), (4, 16, 3e-3, 1e-4, 0.01), (1, 6, 5e-2, 0.0, 0.1)] {
        let cfg = json!({"base_lr": base_lr, "warmup": warmup, "total": total, "min_lr": min_lr, "weight_decay": weight_decay, "p0": p0});
        let out = run_reference(REFERENCE, &[&cfg.to_string()]);
        let r: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        let schedule = Schedule { kind: ScheduleKind::Cosine, base_lr, warmup, total, min_lr };

        // The schedule as a function of MLX's step count.
        for (k, want) in r["rates"].as_array().unwrap().iter().enumerate() {
            let (ours, want) = (schedule.lr(k) as f64, want.as_f64().unwrap());
            assert!(close(ours, want, 1e-6), "{cfg}: lr at step count {k}: ours {ours}, MLX {want}");
        }

        // AdamW updates, each with the rate the training loop gives it (`lr(step - 1)`), by the
        // fused CPU primitive, the composed ops, and those compiled.
        let rev2 = |v: &[f32]| v.iter().rev().step_by(2).copied().collect::<Vec<f32>>();
        for way in ["fused", "composed", "compiled"] {
            let mut opt = AdamW::new(weight_decay);
            opt.fused = way == "fused";
            if way == "compiled" {
                opt.compiled = Some(mlx::Compiled::new());
            }
            let u0 = rev2(&p0);
            let mut ps = vec![Array::from_slice(&p0, &[p0.len() as i32]).unwrap(), Array::from_slice(&u0, &[u0.len() as i32]).unwrap()];
            for (t, (want, used)) in r["steps"].as_array().unwrap().iter().zip(r["used"].as_array().unwrap()).enumerate() {
                let step = t + 1;
                let lr = schedule.lr(step - 1);
                assert!(close(lr as f64, used.as_f64().unwrap(), 1e-6), "{cfg}: update {step} uses lr {lr}, MLX {used}");
                let g = grad(step, p0.len());
                let gu: Vec<f32> = rev2(&g).iter().map(|x| 2.0 * x).collect();
                let gs = [Array::from_slice(&g, &[g.len() as i32]).unwrap(), Array::from_slice(&gu, &[gu.len() as i32]).unwrap()];
                ps = opt.update(&ps, &gs, lr).unwrap();
                mlx::eval(ps.iter().chain(opt.state())).unwrap();
                for (k, (p, want)) in ps.iter().zip(want.as_array().unwrap()).enumerate() {
                    let ours = p.to_vec::<f32>().unwrap();
                    let want: Vec<f64> = want.as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
                    assert_eq!(ours.len(), want.len());
                    // f32 rounding of the same formula in another order: relative to the vector's
                    // scale (a weight passing near zero cancels, so its own relative error means little).
                    let scale = want.iter().fold(0f64, |m, b| m.max(b.abs()));
                    for (i, (a, b)) in ours.iter().zip(&want).enumerate() {
                        assert!((*a as f64 - b).abs() <= 1e-5 * scale, "{cfg} {way}: update {step}, param {k}[{i}]: ours {a}, MLX {b}");
                    }
                }
            }
            // The parameters moved: the comparison was not of two idle optimizers.
            let last = ps[0].to_vec::<f32>().unwrap();
            assert!(last.iter().zip(&p0).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) > 10.0 * min_lr.max(1e-4), "{cfg}");
        }
    }
}
