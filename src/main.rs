fn main() -> std::process::ExitCode {
    offloadd::cli::main()
}
