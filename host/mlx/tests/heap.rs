//! The C-heap policy MLX is loaded with (src/heap.rs): a step that frees and allocates the same
//! activations again must reuse the memory instead of faulting it in from the kernel each time.
//! Its own binary without the test harness, so the policy is set before any thread starts (as
//! `brain` does) and no other test's allocations land in its page-fault count; each setting runs
//! in a child process (the policy is set once per process).

mod common;
use common::*;
use mlx::Array;

/// This process's minor page faults so far (field 10 of /proc/self/stat).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) is in parentheses and may hold spaces; count after it.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(7).unwrap().parse().unwrap()
}

/// One "training step" the shape of a small model's MLP: forward and backward through two
/// matmuls and a gate, every intermediate a fresh array of 1-6 MB, all freed at the end.
fn step(x: &Array, w1: &Array, w2: &Array) -> f32 {
    let loss = |p: &[Array]| -> mlx::Result<Vec<Array>> {
        let mut x = p[0].clone();
        for _ in 0..8 {
            let h = x.matmul(&p[1])?;
            x = h.sigmoid()?.mul(&h)?.matmul(&p[2])?.add(&x)?;
        }
        Ok(vec![x.square()?.mean_all()?])
    };
    let (v, g) = mlx::transforms::value_and_grad(loss, &[x, w1, w2], &[1, 2]).unwrap();
    mlx::transforms::eval(g.iter().chain(&v)).unwrap();
    v[0].item::<f32>().unwrap()
}

fn main() {
    // First, before any thread starts (this test binary has no harness: see Cargo.toml).
    let applied = mlx::heap::keep_freed_memory();
    if std::env::var("HEAP_TEST_CHILD").is_ok() {
        // The child: report what the policy was and how many pages the steps faulted in.
        let info = mlx::init().unwrap();
        assert_eq!(applied, info.heap_kept);
        let (x, w1, w2) = (rand_arr(&[512, 384], 1).0, rand_arr(&[384, 1536], 2).0, rand_arr(&[1536, 384], 3).0);
        for _ in 0..3 {
            step(&x, &w1, &w2);
        }
        let before = minor_faults();
        for _ in 0..10 {
            step(&x, &w1, &w2);
        }
        println!("HEAP_RESULT kept={} faults_per_step={}", info.heap_kept, (minor_faults() - before) / 10);
        return;
    }
    let run = |default_heap: bool| -> (bool, u64) {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.env("HEAP_TEST_CHILD", "1");
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k == "GLIBC_TUNABLES" || (k.starts_with("MALLOC_") && k.ends_with('_')) || k == "BRAIN_MLX_DEFAULT_HEAP" {
                cmd.env_remove(k);
            }
        }
        if default_heap {
            cmd.env("BRAIN_MLX_DEFAULT_HEAP", "1");
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        let at = text.find("HEAP_RESULT").unwrap_or_else(|| panic!("no result in {text}"));
        let line = text[at..].lines().next().unwrap();
        let field = |k: &str| line.split(' ').find_map(|f| f.strip_prefix(k)).unwrap().to_string();
        (field("kept=") == "true", field("faults_per_step=").parse().unwrap())
    };
    // Under glibc's defaults each step faults in ~10,000 pages again (its arrays are 1.5-3 MB).
    let (kept, faults) = run(false);
    let (default_kept, default_faults) = run(true);
    println!("page faults per step: kept heap {faults}, glibc's defaults {default_faults}");
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(kept, "the heap policy was not applied on glibc");
        assert!(faults < 400, "{faults} page faults per repeated step: freed memory is not being reused");
    }
    assert!(!default_kept, "BRAIN_MLX_DEFAULT_HEAP=1 did not keep glibc's defaults");
    println!("heap: ok");
}
