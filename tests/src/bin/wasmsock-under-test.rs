fn main() -> std::process::ExitCode {
    wasmsock::cli::main()
}
