mod common;
use common::*;
use mlx::{Array, Error};

#[test]
fn value_and_grad_matches_analytic() {
    // f(x, w) = sum(x^2 * w): df/dx = 2 x w, df/dw = x^2
    let (x, xv) = rand_arr(&[3, 4], 1);
    let (w, wv) = rand_arr(&[3, 4], 2);
    let (values, grads) = mlx::value_and_grad(
        |a: &[Array]| Ok(vec![a[0].square()?.mul(&a[1])?.sum_all()?]),
        &[&x, &w],
        &[0, 1],
    )
    .unwrap();
    let want: f32 = xv.iter().zip(&wv).map(|(x, w)| x * x * w).sum();
    assert!((values[0].item::<f32>().unwrap() - want).abs() < 1e-5);
    let dx: Vec<f32> = xv.iter().zip(&wv).map(|(x, w)| 2.0 * x * w).collect();
    let dw: Vec<f32> = xv.iter().map(|x| x * x).collect();
    assert_close(&vals(&grads[0]), &dx, 1e-6, "dx");
    assert_close(&vals(&grads[1]), &dw, 1e-6, "dw");
}

/// loss(w) = mean(logsumexp(x @ w, -1)) + 0.1 * sum(rms_norm(x @ w)^2)
fn loss(x: &Array, w: &Array) -> mlx::Result<Array> {
    let h = x.matmul(w)?;
    let a = h.logsumexp(&[-1], false)?.mean_all()?;
    let b = mlx::fast::rms_norm(&h, None, 1e-5)?.square()?.sum_all()?.mul(0.1f32)?;
    a.add(&b)
}

#[test]
fn value_and_grad_matches_finite_differences() {
    let (x, _) = rand_arr(&[5, 6], 3);
    let (w, wv) = rand_arr(&[6, 7], 4);
    let x64 = x.as_type(mlx::Dtype::Float64);
    let _ = x64; // f64 is not on every backend; finite differences in f32 with a wide step
    let (_, g) = mlx::value_and_grad(|a: &[Array]| Ok(vec![loss(&x, &a[0])?]), &[&w], &[0]).unwrap();
    let g = vals(&g[0]);
    let eps = 1e-2f32;
    for i in (0..wv.len()).step_by(5) {
        let mut p = wv.clone();
        p[i] += eps;
        let mut m = wv.clone();
        m[i] -= eps;
        let lp = loss(&x, &arr(&p, &[6, 7])).unwrap().item::<f32>().unwrap();
        let lm = loss(&x, &arr(&m, &[6, 7])).unwrap().item::<f32>().unwrap();
        let fd = (lp - lm) / (2.0 * eps);
        assert!((fd - g[i]).abs() <= 2e-3 * g[i].abs().max(0.1), "param {i}: fd {fd} vs grad {}", g[i]);
    }
}

#[test]
fn auxiliary_outputs_pass_through() {
    let x = arr(&[1.0, 2.0], &[2]);
    let (v, g) = mlx::value_and_grad(|a: &[Array]| Ok(vec![a[0].sum_all()?, a[0].mul(3.0f32)?]), &[&x], &[0]).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(vals(&v[1]), vec![3.0, 6.0]);
    assert_eq!(vals(&g[0]), vec![1.0, 1.0]);
}

#[test]
fn callback_errors_and_panics_come_back() {
    let x = arr(&[1.0, 2.0], &[2]);
    let r = mlx::value_and_grad(|_: &[Array]| Err(Error::InvalidArgument("from the closure".into())), &[&x], &[0]);
    match r {
        Err(Error::InvalidArgument(m)) => assert_eq!(m, "from the closure"),
        other => panic!("{other:?}"),
    }
    // an MLX exception inside the closure keeps MLX's message
    let r = mlx::value_and_grad(|a: &[Array]| Ok(vec![a[0].reshape(&[3])?]), &[&x], &[0]);
    assert!(matches!(r, Err(Error::Exception(ref m)) if m.contains("reshape")), "{r:?}");
    let r = mlx::value_and_grad(|_: &[Array]| -> mlx::Result<Vec<Array>> { panic!("boom") }, &[&x], &[0]);
    assert!(matches!(r, Err(Error::Callback(ref m)) if m.contains("boom")), "{r:?}");
    // a non-scalar loss is MLX's error
    let r = mlx::value_and_grad(|a: &[Array]| Ok(vec![a[0].clone()]), &[&x], &[0]);
    assert!(matches!(r, Err(Error::Exception(_))), "{r:?}");
    // and everything still works afterwards
    let (_, g) = mlx::value_and_grad(|a: &[Array]| Ok(vec![a[0].square()?.sum_all()?]), &[&x], &[0]).unwrap();
    assert_eq!(vals(&g[0]), vec![2.0, 4.0]);
}

#[test]
fn vjp_and_stop_gradient() {
    let x = arr(&[1.0, 2.0, 3.0], &[3]);
    let ct = arr(&[1.0, 0.5, 0.0], &[3]);
    let (o, v) = mlx::vjp(|a: &[Array]| Ok(vec![a[0].square()?]), &[&x], &[&ct]).unwrap();
    assert_eq!(vals(&o[0]), vec![1.0, 4.0, 9.0]);
    assert_eq!(vals(&v[0]), vec![2.0, 2.0, 0.0]);
    let (_, g) = mlx::value_and_grad(|a: &[Array]| Ok(vec![a[0].mul(&a[0].stop_gradient()?)?.sum_all()?]), &[&x], &[0]).unwrap();
    assert_eq!(vals(&g[0]), vec![1.0, 2.0, 3.0]);
}

#[test]
fn checkpoint_gives_the_same_gradients() {
    let (x, _) = rand_arr(&[4, 8], 5);
    let (w1, _) = rand_arr(&[8, 8], 6);
    let (w2, _) = rand_arr(&[8, 8], 7);
    let block = |h: &Array, w: &Array| -> mlx::Result<Array> { h.matmul(w)?.tanh() };
    let plain = mlx::value_and_grad(
        |a: &[Array]| Ok(vec![block(&block(&x, &a[0])?, &a[1])?.sum_all()?]),
        &[&w1, &w2],
        &[0, 1],
    )
    .unwrap();
    let ckpt = mlx::value_and_grad(
        |a: &[Array]| {
            let h = mlx::checkpoint(move |i: &[Array]| Ok(vec![i[0].matmul(&i[1])?.tanh()?]), &[&x, &a[0]])?;
            let h = mlx::checkpoint(move |i: &[Array]| Ok(vec![i[0].matmul(&i[1])?.tanh()?]), &[&h[0], &a[1]])?;
            Ok(vec![h[0].sum_all()?])
        },
        &[&w1, &w2],
        &[0, 1],
    )
    .unwrap();
    assert_close(&vals(&plain.0[0]), &vals(&ckpt.0[0]), 1e-6, "value");
    for i in 0..2 {
        assert_close(&vals(&plain.1[i]), &vals(&ckpt.1[i]), 1e-6, "grad");
    }
}

#[test]
fn quantized_matmul_gradient_wrt_input() {
    let (w, _) = rand_arr(&[16, 64], 8);
    let q = mlx::quantized::quantize(&w, 64, 4).unwrap();
    let deq = q.dequantize().unwrap();
    let (x, _) = rand_arr(&[3, 64], 9);
    let (_, gq) = mlx::value_and_grad(|a: &[Array]| Ok(vec![q.matmul_t(&a[0])?.square()?.sum_all()?]), &[&x], &[0]).unwrap();
    let (_, gd) = mlx::value_and_grad(|a: &[Array]| Ok(vec![a[0].linear(&deq, None)?.square()?.sum_all()?]), &[&x], &[0]).unwrap();
    assert_close(&vals(&gq[0]), &vals(&gd[0]), 1e-4, "d x through quantized_matmul");
}

#[test]
fn device_selection_errors_are_reported() {
    if !mlx::device::is_gpu_available().unwrap() {
        assert!(mlx::device::set_default_device(mlx::Device::Gpu(0)).is_err());
    }
    let dev = mlx::device::default_device().unwrap();
    mlx::device::set_default_device(dev).unwrap();
    let s = mlx::device::new_stream(mlx::Device::Cpu).unwrap();
    assert_eq!(s.device, mlx::Device::Cpu);
}

#[test]
fn export_graph_writes_the_unevaluated_ops_with_dtypes() {
    // A bf16 x f32 product (MLX promotes with an AsType) and its gradient, left unevaluated.
    let (x, _) = rand_arr(&[3, 4], 3);
    let xb = x.as_type(mlx::Dtype::Bfloat16).unwrap();
    let (w, _) = rand_arr(&[4, 2], 4);
    let (vals, grads) = mlx::value_and_grad(|a: &[Array]| Ok(vec![xb.matmul(&a[0])?.sum_all()?]), &[&w], &[0]).unwrap();
    let dir = std::env::temp_dir().join(format!("brain-graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (dot, txt) = (dir.join("g.dot"), dir.join("g.txt"));
    mlx::export_graph(&dot, vals.iter().chain(grads.iter()), mlx::GraphFormat::Dot).unwrap();
    mlx::export_graph(&txt, vals.iter().chain(grads.iter()), mlx::GraphFormat::Text).unwrap();
    let dot = std::fs::read_to_string(&dot).unwrap();
    let txt = std::fs::read_to_string(&txt).unwrap();
    assert!(dot.starts_with("digraph {"), "{dot}");
    for op in ["Matmul", "AsType", "Sum"] {
        assert!(dot.contains(&format!("[label =\"{op}\"")), "no {op} node in\n{dot}");
    }
    assert!(txt.contains("AsType") && txt.contains("bfloat16") && txt.contains("(3,4), float32"), "{txt}");
    // The gradient's product: x^T (4, 3) times the cotangent (3, 2), in f32.
    assert!(txt.lines().any(|l| l.starts_with("Matmul") && l.contains("(4,2), float32")), "{txt}");
    let err = mlx::export_graph(&dir.join("missing/g.dot"), vals.iter(), mlx::GraphFormat::Dot).unwrap_err();
    assert!(err.to_string().contains("missing/g.dot"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compiled_functions_match_uncompiled_retrace_on_new_shapes_and_bake_captures() {
    // loss(w, x) = sum(silu(x w)^2): a gradient and an elementwise chain for MLX to fuse.
    let f = |a: &[Array]| -> mlx::Result<Vec<Array>> {
        let loss = |v: &[Array]| Ok(vec![v[0].matmul(&v[1])?.silu()?.square()?.sum_all()?]);
        let (vals, grads) = mlx::value_and_grad(loss, &[&a[1], &a[0]], &[1])?;
        Ok(vec![vals[0].clone(), grads[0].clone()])
    };
    let compiled = mlx::Compiled::new();
    let calls = std::cell::Cell::new(0);
    let traced = |a: &[Array]| {
        calls.set(calls.get() + 1);
        f(a)
    };
    for (step, rows) in [(1, 3), (2, 3), (3, 5), (4, 3)] {
        let (w, _) = rand_arr(&[4, 2], 10 + step);
        let (x, _) = rand_arr(&[rows, 4], 20 + step);
        let want = f(&[w.clone(), x.clone()]).unwrap();
        let got = compiled.call(traced, &[&w, &x]).unwrap();
        for (g, e) in got.iter().zip(&want) {
            assert_eq!(g.shape(), e.shape());
            let (g, e) = (g.to_vec::<f32>().unwrap(), e.to_vec::<f32>().unwrap());
            for (a, b) in g.iter().zip(&e) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "step {step}: {a} vs {b}");
            }
        }
    }
    // Traced for 3 rows, then for 5; the second 3-row call and the last replay the first trace.
    assert_eq!(calls.get(), 2);

    // A captured number is part of the graph: a new value needs a new Compiled.
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let scaled = |k: f32| move |a: &[Array]| Ok(vec![a[0].mul(k)?]);
    let c = mlx::Compiled::new();
    assert_eq!(c.call(scaled(2.0), &[&x]).unwrap()[0].to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
    assert_eq!(c.call(scaled(3.0), &[&x]).unwrap()[0].to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
    assert_eq!(mlx::Compiled::new().call(scaled(3.0), &[&x]).unwrap()[0].to_vec::<f32>().unwrap(), vec![3.0, 6.0]);

    // An error while tracing comes back as it was, and leaves nothing half-traced behind.
    let c = mlx::Compiled::new();
    let err = c.call(|_: &[Array]| Err(Error::InvalidArgument("no trace".into())), &[&x]).unwrap_err();
    assert!(err.to_string().contains("no trace"), "{err}");
    assert_eq!(c.call(scaled(5.0), &[&x]).unwrap()[0].to_vec::<f32>().unwrap(), vec![5.0, 10.0]);
}
