/// See host/Cargo.toml: mimalloc instead of glibc malloc (measured with bench/collect.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before any thread starts: MLX's CPU arrays then reuse freed memory (see mlx::heap).
    mlx::heap::keep_freed_memory();
    brain::cli::main()
}
