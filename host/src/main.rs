/// See host/Cargo.toml: mimalloc instead of glibc malloc (measured with bench/collect.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    brain::cli::main()
}
