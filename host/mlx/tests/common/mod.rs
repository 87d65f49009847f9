#![allow(dead_code)]
use mlx::Array;

/// Deterministic pseudo-random values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn arr(data: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(data, shape).unwrap()
}

pub fn rand_arr(shape: &[i32], seed: u64) -> (Array, Vec<f32>) {
    let n: i32 = shape.iter().product();
    let v = rand_vec(n as usize, seed);
    (arr(&v, shape), v)
}

pub fn vals(a: &Array) -> Vec<f32> {
    a.as_type(mlx::Dtype::Float32).unwrap().to_vec::<f32>().unwrap()
}

/// max |a - b| / max(|b|, floor)
pub fn max_rel_err(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(floor)).fold(0.0, f32::max)
}

pub fn assert_close(a: &[f32], b: &[f32], rel: f32, what: &str) {
    let e = max_rel_err(a, b, 1.0);
    assert!(e <= rel, "{what}: max rel err {e} > {rel}");
}

/// Row-major (m, k) x (k, n) in f64.
pub fn matmul_ref(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f64;
            for p in 0..k {
                acc += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            c[i * n + j] = acc as f32;
        }
    }
    c
}
