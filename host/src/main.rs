// mimalloc: lower fragmentation than glibc malloc under many connections whose handshakes
// allocate and free a lot (measured: see BENCHMARKS.md, idle memory per connection).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wasmsock::cli::main()
}
