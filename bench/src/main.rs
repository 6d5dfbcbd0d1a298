//! wasmsock benchmarks, server and load on separate cores, with the Go Gin + gorilla echo server
//! (`../shared/bench`) measured side by side in the same run.
//!
//! ```text
//! cargo build --release -p wasmsock -p wasmsock-bench
//! ./target/release/wasmsock-bench all            # every scenario (about 10 minutes)
//! ./target/release/wasmsock-bench echo|memory|handshake|calls|reload|fanout|broker|compression|fairness|outbound|pusher|history
//! ./target/release/wasmsock-bench history --only publishing,recovery,memory,presence
//! ./target/release/wasmsock-bench soak [--minutes 5]   # not part of `all`
//! ```
//!
//! The servers run on CPU 0 (`taskset -c 0`), this process and the Go load client on CPU 1.
//! Results are printed as Markdown tables (for BENCHMARKS.md) and as JSON lines.

mod calls;
mod client;
mod compression;
mod echo;
mod fairness;
mod fanout;
mod history;
mod kit;
mod outbound;
mod proxy;
mod pusher;
mod reload;
mod server;
mod soak;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: wasmsock-bench [all|calls|echo|memory|handshake|reload|fanout|broker|compression|fairness|outbound|pusher|history] [--quick]\n       wasmsock-bench history [--only publishing,recovery,memory,presence]\n       wasmsock-bench soak [--minutes N]   (not part of all: 5 minutes by default)"
        );
        println!("servers on CPU 0, load on CPU 1; Markdown tables and JSON lines on stdout");
        return Ok(());
    }
    let which = args.first().map(String::as_str).unwrap_or("all");
    let quick = args.iter().any(|a| a == "--quick");
    // `soak --minutes N` (5 by default).
    let minutes = match args.iter().position(|a| a == "--minutes") {
        Some(i) => args.get(i + 1).and_then(|m| m.parse::<f64>().ok()).filter(|m| *m > 0.0).context("--minutes N")?,
        None => 5.0,
    };
    // `history --only publishing,recovery` (the parts of one scenario).
    let only: Vec<String> = match args.iter().position(|a| a == "--only") {
        Some(i) => args.get(i + 1).context("--only PART[,PART]")?.split(',').map(str::to_owned).collect(),
        None => Vec::new(),
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    if cpus < 2 {
        bail!("the benchmarks pin the server and the load to different CPUs: this machine has {cpus}");
    }
    // This process (load clients, orchestration) stays off the server's core.
    kit::pin_to_cpu(1);
    // Enough file descriptors for 10k connections, here and in the load clients it starts.
    wasmsock::server::raise_nofile(1 << 20);
    let kit = kit::Kit::prepare(cpus)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    const ALL: &[&str] = &[
        "calls",
        "echo",
        "memory",
        "handshake",
        "reload",
        "fanout",
        "broker",
        "compression",
        "fairness",
        "outbound",
        "pusher",
        "history",
    ];
    let scenarios: Vec<&str> = match which {
        "all" => ALL.to_vec(),
        one if ALL.contains(&one) || one == "soak" => vec![one],
        other => bail!("unknown scenario {other:?}: all, {}", ALL.join(", ")),
    };
    println!("# wasmsock benchmarks ({})\n", kit.describe());
    for s in scenarios {
        match s {
            "echo" => echo::throughput(&kit, quick)?,
            "memory" => echo::idle_memory(&kit, quick)?,
            "handshake" => rt.block_on(echo::handshakes(&kit, quick))?,
            "calls" => calls::plugin_call_overhead(&kit, quick)?,
            "reload" => rt.block_on(reload::under_load(&kit, quick))?,
            "fanout" => rt.block_on(fanout::fan_out(&kit, quick))?,
            "broker" => rt.block_on(fanout::cross_node(&kit, quick))?,
            "compression" => compression::scenarios(&kit, quick)?,
            "fairness" => rt.block_on(fairness::echo_beside_burners(&kit, quick))?,
            "soak" => rt.block_on(soak::run(&kit, minutes))?,
            "outbound" => rt.block_on(outbound::calls_to_a_backend(&kit, quick))?,
            "pusher" => rt.block_on(pusher::triggers(&kit, quick))?,
            "history" => rt.block_on(history::scenarios(&kit, quick, &only))?,
            _ => unreachable!(),
        }
    }
    Ok(())
}
