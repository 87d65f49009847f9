//! The fused CPU attention when its scratch budget holds one KV-head unit at a time (the path a
//! long sequence takes): the same values and gradients as with everything in one chunk. Its own
//! test binary, since the budget is an environment variable of the process.

mod common;
use common::*;
use mlx::fast::attention_cpu;
use mlx::Array;

#[test]
fn chunked_scratch_gives_the_same_attention_and_gradients() {
    let (q, _) = rand_arr(&[3, 4, 20, 16], 80);
    let (k, _) = rand_arr(&[3, 2, 20, 16], 81);
    let (v, _) = rand_arr(&[3, 2, 20, 16], 82);
    let (c, _) = rand_arr(&[3, 4, 20, 16], 83);
    let run = || {
        let loss = |a: &[Array]| Ok(vec![attention_cpu(&a[0], &a[1], &a[2], 0.25, true)?.mul(&c)?.sum_all()?]);
        let (l, g) = mlx::value_and_grad(loss, &[&q, &k, &v], &[0, 1, 2]).unwrap();
        let mut all = vals(&l[0]);
        for g in &g {
            all.extend(vals(g));
        }
        all
    };
    let whole = run();
    // 2 rows x 20 keys x 2 matrices x 20 queries... = one unit (2 heads x 20 rows) per chunk.
    std::env::set_var("BRAIN_MLX_ATTENTION_SCRATCH", "1000");
    let chunked = run();
    std::env::remove_var("BRAIN_MLX_ATTENTION_SCRATCH");
    assert_eq!(whole.len(), chunked.len());
    assert_close(&chunked, &whole, 1e-6, "chunked vs whole");
}
