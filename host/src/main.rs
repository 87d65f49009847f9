fn main() -> std::process::ExitCode {
    brain::cli::main()
}
