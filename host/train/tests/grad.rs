//! Gradients of the masked loss w.r.t. LoRA parameters match finite differences (f32).

mod common;

use brain_train::data::collate;
use brain_train::loss::{nll_sum, DeviceBatch};
use brain_train::models::{Mode, Model};
use brain_train::tokenizer::{Message, Tokenizer};
use common::{small_spec, tiny};
use mlx::loss::CePath;
use mlx::{Array, Dtype};

#[test]
fn lora_gradients_match_finite_differences() {
    let (_td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let mut model = Model::load(&dir, Some(Dtype::Float32)).unwrap();
    let keys: Vec<String> = ["self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"].map(String::from).to_vec();
    model.apply_lora(-1, &keys, 4, 20.0, 0.0, 1).unwrap();
    // lora_b starts at zero; make it non-zero so every path carries gradient.
    let vals: Vec<Array> = model
        .trainable_params()
        .iter()
        .enumerate()
        .map(|(i, (_, a))| {
            let k = mlx::random::key(100 + i as u64).unwrap();
            mlx::random::normal(&a.shape(), Dtype::Float32, 0.0, 0.1, Some(&k)).unwrap()
        })
        .collect();
    model.set_trainable(vals);
    let conv = [Message::new("user", "What is 2 + 2?"), Message::new("assistant", "4, of course."), Message::new("user", "thanks"), Message::new("assistant", "ok")];
    let ex1 = tok.encode_chat(&conv).unwrap();
    let ex2 = tok.encode_chat(&conv[..2]).unwrap();
    let batch = collate(&[&ex1, &ex2], tok.pad_id);
    let db = DeviceBatch::new(&batch).unwrap();
    let denom = batch.tokens as f32;

    let mut worst = 0f64;
    for path in [CePath::Fused, CePath::Composed] {
        let loss_at = |vals: &[Array]| -> f64 {
            let p = model.with_trainable(vals);
            nll_sum(&model, &p, &db, Mode::default(), path).unwrap().item::<f32>().unwrap() as f64 / denom as f64
        };
        let base: Vec<Array> = model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
        let refs: Vec<&Array> = base.iter().collect();
        let argnums: Vec<i32> = (0..refs.len() as i32).collect();
        let (_, grads) = mlx::value_and_grad(
            |xs: &[Array]| {
                let p = model.with_trainable(xs);
                Ok(vec![nll_sum(&model, &p, &db, Mode::default(), path)?.div(denom)?])
            },
            &refs,
            &argnums,
        )
        .unwrap();
        // Per tensor: the directional derivative along the gradient and along a random direction,
        // by central differences.
        for (i, g) in grads.iter().enumerate() {
            let gv = g.to_vec::<f32>().unwrap();
            let gnorm = gv.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            assert!(gnorm > 1e-6, "tensor {i} has no gradient");
            let k = mlx::random::key(7 + i as u64).unwrap();
            let rnd = mlx::random::normal(&g.shape(), Dtype::Float32, 0.0, 1.0, Some(&k)).unwrap().to_vec::<f32>().unwrap();
            let rnorm = rnd.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            for dir in [gv.iter().map(|x| *x as f64 / gnorm).collect::<Vec<f64>>(), rnd.iter().map(|x| *x as f64 / rnorm).collect()] {
                let analytic: f64 = dir.iter().zip(&gv).map(|(d, g)| d * *g as f64).sum();
                // Step so the loss moves by ~0.01: big enough to beat f32 rounding, small enough
                // for the curvature.
                let eps = (0.01 / gnorm).clamp(1e-3, 0.4);
                let bv = base[i].to_vec::<f32>().unwrap();
                let shifted = |s: f64| {
                    let mut vals = base.clone();
                    let v: Vec<f32> = bv.iter().zip(&dir).map(|(b, d)| (*b as f64 + s * d) as f32).collect();
                    vals[i] = Array::from_slice(&v, &base[i].shape()).unwrap();
                    loss_at(&vals)
                };
                // Central differences with two rounds of Richardson extrapolation (cancel eps², eps⁴).
                let d = |e: f64| (shifted(e) - shifted(-e)) / (2.0 * e);
                let (d1, d2, d4) = (d(eps), d(eps / 2.0), d(eps / 4.0));
                let numeric = (16.0 * (4.0 * d4 - d2) / 3.0 - (4.0 * d2 - d1) / 3.0) / 15.0;
                // Relative to the gradient's norm (along the gradient this is the plain relative
                // error; along a random unit direction the derivative itself can be tiny).
                let err = (numeric - analytic).abs() / gnorm;
                worst = worst.max(err);
                assert!(err < 1e-3, "{path:?} tensor {} ({}): analytic {analytic}, numeric {numeric}, rel err {err}", i, model.trainable_params()[i].0);
            }
        }
    }
    eprintln!("largest relative error: {worst:.2e}");
}

#[test]
fn gradient_checkpointing_gives_the_same_loss_and_gradients() {
    let (_td, dir) = tiny(small_spec());
    let tok = Tokenizer::load(&dir).unwrap();
    let mut model = Model::load(&dir, Some(Dtype::Float32)).unwrap();
    let keys: Vec<String> = ["self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj"].map(String::from).to_vec();
    model.apply_lora(-1, &keys, 4, 20.0, 0.1, 1).unwrap();
    common::randomize_trainable(&mut model);
    let ex = tok.encode_chat(&[Message::new("user", "hi there"), Message::new("assistant", "hello, friend")]).unwrap();
    let batch = collate(&[&ex, &ex], tok.pad_id);
    let db = DeviceBatch::new(&batch).unwrap();
    // Dropout on: the recomputation must draw the same masks.
    let key = mlx::random::key(9).unwrap();
    let mode = Mode { dropout_key: Some(&key) };
    let run = |model: &Model| {
        let base: Vec<Array> = model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
        let refs: Vec<&Array> = base.iter().collect();
        let argnums: Vec<i32> = (0..refs.len() as i32).collect();
        let (v, g) = mlx::value_and_grad(
            |xs: &[Array]| Ok(vec![nll_sum(model, &model.with_trainable(xs), &db, mode, CePath::Auto)?]),
            &refs,
            &argnums,
        )
        .unwrap();
        (v[0].item::<f32>().unwrap(), g.iter().map(|g| g.to_vec::<f32>().unwrap()).collect::<Vec<_>>())
    };
    let (l1, g1) = run(&model);
    model.grad_checkpoint = true;
    let (l2, g2) = run(&model);
    assert!((l1 - l2).abs() <= 1e-6 * l1.abs(), "{l1} vs {l2}");
    for (a, b) in g1.iter().zip(&g2) {
        assert!(common::rel_err(b, a) < 1e-5);
    }
}
