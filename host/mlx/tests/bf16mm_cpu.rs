//! The bridge's bf16-product matmul (`mlx::bf16mm`) against a plain f64 product in the test, for
//! both orientations, shapes that leave partial register tiles, panels and K blocks, batched x,
//! and its gradients (w.r.t. x by the kernel itself, w.r.t. w by MLX) against the same product.
//! x and w are bf16-exact here, so every product is exact and the only difference from the f64
//! reference is the order of f32 sums; a second case rounds x and checks the kernel rounds it to
//! bf16 (nearest even) as the reference does. Where the CPU lacks AVX-512 BF16 the op must be
//! refused with an error saying so.

mod common;
use common::*;
use mlx::{bf16mm, vjp, Array, Dtype};

/// Rounds to the nearest bf16 (ties to even), as f32.
fn round_bf16(v: f32) -> f32 {
    mlx::bf16::from_f32(v).to_f32()
}

fn bf16_exact(n: usize, seed: u64) -> Vec<f32> {
    rand_vec(n, seed).into_iter().map(round_bf16).collect()
}

fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

fn bf16_array(v: &[f32], shape: &[i32]) -> Array {
    arr(v, shape).as_type(Dtype::Bfloat16).unwrap()
}

/// max |a - b| / max |b| (the scale of the outputs: sums of up to K terms of either sign).
fn rel_to_max(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
}

#[test]
fn refused_without_the_instructions_or_checked_with_them() {
    if !bf16mm::is_available().unwrap() {
        let w = bf16_array(&bf16_exact(6, 1), &[2, 3]);
        let e = bf16mm::matmul_cpu(&arr(&[1.0, 2.0, 3.0], &[1, 3]), &w, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("AVX-512 BF16"), "{e}");
        return;
    }
    // (M, N, K): partial tiles in M (12 rows each), N (32 columns each), K blocks (256 pairs),
    // odd K, one row (decoding), a panel of 18 columns (one 16-row block transposed in registers).
    // Up to 4 rows `x @ w^T` reads w in place, a row at a time in chunks of 4 x 32: K below one
    // chunk, K past whole chunks with a masked tail (576), K = 1, and one split across threads.
    let in_place = [(2, 7, 37), (3, 1001, 576), (4, 13, 33), (1, 5, 1), (4, 64, 96)];
    for &(m, n, k) in [(13usize, 45usize, 37usize), (1, 70, 64), (40, 32, 600), (25, 96, 513), (12, 1, 2), (7, 50, 96)].iter().chain(&in_place) {
        let x = bf16_exact(m * k, 10 + m as u64);
        let w = bf16_exact(n * k, 20 + n as u64);
        let want = matmul_ref(&x, &transpose(&w, n, k), m, k, n);
        // transpose: w stored (N, K).
        let got = vals(&bf16mm::matmul_cpu(&arr(&x, &[m as i32, k as i32]), &bf16_array(&w, &[n as i32, k as i32]), true).unwrap());
        let e = rel_to_max(&got, &want);
        assert!(e < 1e-5, "x @ w^T ({m}, {n}, {k}): rel err {e}");
        // plain: the same matrix stored (K, N).
        let wt = transpose(&w, n, k);
        let got = vals(&bf16mm::matmul_cpu(&arr(&x, &[m as i32, k as i32]), &bf16_array(&wt, &[k as i32, n as i32]), false).unwrap());
        let e = rel_to_max(&got, &want);
        assert!(e < 1e-5, "x @ w ({m}, {n}, {k}): rel err {e}");
    }
}

#[test]
fn rounds_x_to_bf16_and_keeps_batch_dims() {
    if !bf16mm::is_available().unwrap() {
        return; // the refusal is checked above
    }
    let (b, m, n, k) = (3usize, 5usize, 33usize, 48usize);
    let x = rand_vec(b * m * k, 3); // not bf16-exact: the kernel rounds it
    let w = bf16_exact(n * k, 4);
    let xr: Vec<f32> = x.iter().copied().map(round_bf16).collect();
    let want = matmul_ref(&xr, &transpose(&w, n, k), b * m, k, n);
    let y = bf16mm::matmul_cpu(
        &arr(&x, &[b as i32, m as i32, k as i32]),
        &bf16_array(&w, &[n as i32, k as i32]),
        true,
    )
    .unwrap();
    assert_eq!(y.shape(), vec![b as i32, m as i32, n as i32]);
    assert_eq!(y.dtype(), Dtype::Float32);
    let e = rel_to_max(&vals(&y), &want);
    assert!(e < 1e-5, "rounded x: rel err {e}");
    // Against the unrounded product it differs by about bf16's precision, not more.
    let exact = matmul_ref(&x, &transpose(&w, n, k), b * m, k, n);
    let e = rel_to_max(&vals(&y), &exact);
    assert!(e > 1e-6 && e < 2e-2, "rounding x moved the product by {e}");
}

#[test]
fn gradients_match_the_plain_product() {
    if !bf16mm::is_available().unwrap() {
        return; // the refusal is checked above
    }
    let (m, n, k) = (14usize, 40usize, 70usize);
    let x = bf16_exact(m * k, 5);
    let w = bf16_exact(n * k, 6);
    let c = bf16_exact(m * n, 7); // cotangent
    let (xa, wa, ca) = (
        arr(&x, &[m as i32, k as i32]),
        bf16_array(&w, &[n as i32, k as i32]),
        arr(&c, &[m as i32, n as i32]),
    );
    let (_, g) = vjp(|a| Ok(vec![bf16mm::matmul_cpu(&a[0], &a[1], true)?]), &[&xa, &wa], &[&ca]).unwrap();
    // dx = c @ w (M, K): the kernel again (c is bf16-exact, so exact products).
    let dx = matmul_ref(&c, &w, m, n, k);
    let e = rel_to_max(&vals(&g[0]), &dx);
    assert!(e < 1e-5, "d x: rel err {e}");
    // dw = c^T @ x (N, K), returned in w's dtype (bf16).
    assert_eq!(g[1].dtype(), Dtype::Bfloat16);
    let dw = matmul_ref(&transpose(&c, m, n), &x, n, m, k);
    let e = rel_to_max(&vals(&g[1]), &dw);
    assert!(e < 8e-3, "d w: rel err {e}");
}

/// The quantized kernel with its dequantized tiles multiplied in bf16: against a plain f64
/// product of x and the dequantized matrix, both rounded to bf16 (so exact products), for a layer
/// (x @ W^T) and its input gradient (x @ W), with enough rows of x to take the tile path.
#[test]
fn quantized_tiles_in_bf16() {
    use mlx::quantized::{dequantize, quantize, quantized_matmul_cpu_bf16};
    let (m, n, k) = (19usize, 70usize, 128usize);
    let (w, _) = rand_arr(&[n as i32, k as i32], 31);
    let q = quantize(&w, 64, 4).unwrap();
    let wd: Vec<f32> = vals(&dequantize(&q.weight, &q.scales, Some(&q.biases), 64, 4).unwrap()).into_iter().map(round_bf16).collect();
    if !bf16mm::is_available().unwrap() {
        let x = arr(&rand_vec(m * k, 32), &[m as i32, k as i32]);
        let e = quantized_matmul_cpu_bf16(&x, &q.weight, &q.scales, &q.biases, true, 64, 4).unwrap_err().to_string();
        assert!(e.contains("AVX-512 BF16"), "{e}");
        return;
    }
    // x @ W^T (M, N)
    let x = rand_vec(m * k, 32);
    let want = matmul_ref(&x.iter().copied().map(round_bf16).collect::<Vec<_>>(), &transpose(&wd, n, k), m, k, n);
    let got = vals(&quantized_matmul_cpu_bf16(&arr(&x, &[m as i32, k as i32]), &q.weight, &q.scales, &q.biases, true, 64, 4).unwrap());
    let e = rel_to_max(&got, &want);
    assert!(e < 1e-5, "x @ W^T: rel err {e}");
    // g @ W (M, K): the gradient's orientation.
    let g = rand_vec(m * n, 33);
    let want = matmul_ref(&g.iter().copied().map(round_bf16).collect::<Vec<_>>(), &wd, m, n, k);
    let got = vals(&quantized_matmul_cpu_bf16(&arr(&g, &[m as i32, n as i32]), &q.weight, &q.scales, &q.biases, false, 64, 4).unwrap());
    let e = rel_to_max(&got, &want);
    assert!(e < 1e-5, "g @ W: rel err {e}");
    // Through autodiff: d x of sum(c * (x @ W^T)) is c @ W by the same kernel.
    let c = bf16_exact(m * n, 34);
    let (xa, ca) = (arr(&x, &[m as i32, k as i32]), arr(&c, &[m as i32, n as i32]));
    let (_, gr) = vjp(|a| Ok(vec![quantized_matmul_cpu_bf16(&a[0], &q.weight, &q.scales, &q.biases, true, 64, 4)?]), &[&xa], &[&ca]).unwrap();
    let e = rel_to_max(&vals(&gr[0]), &matmul_ref(&c, &wd, m, n, k));
    assert!(e < 1e-5, "d x: rel err {e}");
}

/// The products take x as it is (no Contiguous node: decoding is bound by its op count) and read
/// a strided one through the bridge's row_major gather; a weight is used in place only when it is
/// an evaluated row-major matrix. Transposed and batch-permuted x, lazy and evaluated, and an
/// evaluated transposed weight, against the plain product, through the one-row and the tiled
/// paths of both the bf16 and the quantized kernel.
#[test]
fn strided_inputs_are_read_as_they_are() {
    use mlx::quantized::{dequantize, quantize, quantized_matmul_cpu};
    let (n, k) = (36usize, 64usize);
    let w = bf16_exact(n * k, 41);
    let (wq, _) = rand_arr(&[n as i32, k as i32], 42);
    let q = quantize(&wq, 64, 4).unwrap();
    let wd = vals(&dequantize(&q.weight, &q.scales, Some(&q.biases), 64, 4).unwrap());
    for m in [1usize, 3, 20] {
        let x = bf16_exact(m * k, 43 + m as u64);
        // x (M, K) as the transpose of its (K, M) transpose; and (2, M/2.., K) batches permuted.
        let xt = arr(&transpose(&x, m, k), &[k as i32, m as i32]).swapaxes(0, 1).unwrap();
        let evaluated = arr(&transpose(&x, m, k), &[k as i32, m as i32]).swapaxes(0, 1).unwrap();
        evaluated.eval().unwrap();
        let mut xs = vec![xt, evaluated];
        if m % 2 == 0 {
            // rows (h, b) stored b-major: swapping the two leading axes gives (b, h) order.
            let (b, h) = (2usize, m / 2);
            let mut perm = vec![0f32; m * k];
            for bi in 0..b {
                for hi in 0..h {
                    perm[(hi * b + bi) * k..][..k].copy_from_slice(&x[(bi * h + hi) * k..][..k]);
                }
            }
            xs.push(arr(&perm, &[h as i32, b as i32, k as i32]).swapaxes(0, 1).unwrap());
        }
        // The quantized kernel: the same numbers as for x stored row-major (one row goes through
        // the integer kernel, which quantizes x: near the plain product, not at it).
        let xc = arr(&x, &[m as i32, k as i32]);
        let plain = vals(&quantized_matmul_cpu(&xc, &q.weight, &q.scales, &q.biases, true, 64, 4).unwrap());
        let e = rel_to_max(&plain, &matmul_ref(&x, &transpose(&wd, n, k), m, k, n));
        assert!(e < 2e-2, "quantized ({m} rows): rel err {e}");
        for xa in &xs {
            let got = vals(&quantized_matmul_cpu(xa, &q.weight, &q.scales, &q.biases, true, 64, 4).unwrap());
            assert_eq!(got, plain, "quantized, strided x {:?} ({m} rows)", xa.shape());
        }
        if !bf16mm::is_available().unwrap() {
            continue; // the refusal is checked above
        }
        let want = matmul_ref(&x, &transpose(&w, n, k), m, k, n);
        let wt = bf16_array(&transpose(&w, n, k), &[k as i32, n as i32]).swapaxes(0, 1).unwrap();
        wt.eval().unwrap();
        for xa in &xs {
            for wa in [&bf16_array(&w, &[n as i32, k as i32]), &wt] {
                let got = vals(&bf16mm::matmul_cpu(xa, wa, true).unwrap());
                let e = rel_to_max(&got, &want);
                assert!(e < 1e-5, "bf16, strided x {:?} ({m} rows), w {:?}: rel err {e}", xa.shape(), wa.shape());
            }
        }
    }
}

/// Decoding's grouped products (q, k, v; gate, up as one op): each output equals its own product
/// bit for bit (the same kernel per row, rows split across threads as one list, so a thread
/// crosses from one matrix into the next), for one to four rows of x (in place) and more (the
/// packed path), a strided x, and the gradients equal the separate products'. A matrix of
/// another width is refused, naming it.
#[test]
fn grouped_products_equal_the_separate_ones() {
    if !bf16mm::is_available().unwrap() {
        let w = bf16_array(&bf16_exact(6, 1), &[2, 3]);
        let e = bf16mm::matmul_group_cpu(&arr(&[1.0, 2.0, 3.0], &[1, 3]), &[&w]).unwrap_err().to_string();
        assert!(e.contains("AVX-512 BF16"), "{e}");
        return;
    }
    let k = 200usize;
    // Rows 7, 1000 and 33: the thread boundary falls inside the second matrix.
    let ns = [7usize, 1000, 33];
    let ws: Vec<Array> = ns.iter().enumerate().map(|(i, &n)| bf16_array(&bf16_exact(n * k, 60 + i as u64), &[n as i32, k as i32])).collect();
    let wr: Vec<&Array> = ws.iter().collect();
    for m in [1usize, 2, 4, 9] {
        let x = bf16_exact(m * k, 70 + m as u64);
        let strided = arr(&transpose(&x, m, k), &[k as i32, m as i32]).swapaxes(0, 1).unwrap();
        for xa in [arr(&x, &[1, m as i32, k as i32]), strided] {
            let ys = bf16mm::matmul_group_cpu(&xa, &wr).unwrap();
            assert_eq!(ys.len(), ns.len());
            for (i, (y, w)) in ys.iter().zip(&ws).enumerate() {
                let alone = bf16mm::matmul_cpu(&xa, w, true).unwrap();
                assert_eq!(y.shape(), alone.shape(), "output {i}");
                let (got, want) = (vals(y), vals(&alone));
                assert!(got == want, "output {i} of {m} rows, x {:?}: rel diff {}", xa.shape(), rel_to_max(&got, &want));
            }
        }
    }
    // Gradients: x's is the sum of the products' (c_i @ w_i), each w's its own.
    let m = 3usize;
    let x = arr(&bf16_exact(m * k, 80), &[m as i32, k as i32]);
    let cs: Vec<Array> = ns.iter().enumerate().map(|(i, &n)| arr(&bf16_exact(m * n, 90 + i as u64), &[m as i32, n as i32])).collect();
    let mut inputs = vec![&x];
    inputs.extend(ws.iter());
    let (_, g) = vjp(|a| bf16mm::matmul_group_cpu(&a[0], &a[1..].iter().collect::<Vec<_>>()), &inputs, &cs.iter().collect::<Vec<_>>()).unwrap();
    let mut dx = vec![0f32; m * k];
    for (i, (w, c)) in ws.iter().zip(&cs).enumerate() {
        let (_, gi) = vjp(|a| Ok(vec![bf16mm::matmul_cpu(&a[0], &a[1], true)?]), &[&x, w], &[c]).unwrap();
        assert_eq!(vals(&g[i + 1]), vals(&gi[1]), "d w{i}");
        for (d, v) in dx.iter_mut().zip(vals(&gi[0])) {
            *d += v;
        }
    }
    let e = rel_to_max(&vals(&g[0]), &dx);
    assert!(e < 1e-6, "d x: rel err {e}");

    let narrow = bf16_array(&bf16_exact(4 * 10, 3), &[4, 10]);
    let e = bf16mm::matmul_group_cpu(&x, &[&ws[0], &narrow]).unwrap_err().to_string();
    assert!(e.contains("matrix 1") && e.contains("200"), "{e}");
}
