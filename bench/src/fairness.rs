//! Fair plugin execution (issue 19, item 3): the p99 of the echo route on a server whose other
//! route's plugin burns 40 ms on every message from 50 connections, against the same echo on
//! the same server with those 50 connections quiet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::client;
use crate::kit::{Kit, median};
use crate::server::Server;

/// The burning route: the probe plugin spins for N ms of wall time on `burn N`, then answers
/// `burned`. Its deadline leaves room for a burn slowed down by the CPU it shares.
pub const BURN_ROUTE: &str = r#"
[[routes]]
path = "/burn"
plugins = ["probe"]
[plugins.probe]
deadline = "500ms"
"#;

const BURNERS: usize = 50;
const BURN_MS: u64 = 40;

/// 50 connections, each sending `burn 40` and waiting for the answer, in a loop until stopped.
struct Burners {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Burners {
    async fn start(server: &Server, tls: &Arc<rustls::ClientConfig>) -> Result<Burners> {
        let (stop, calls) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..BURNERS {
            let mut ws = client::connect(&server.url("/burn"), server.port, tls).await?;
            let (stop, calls) = (stop.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    // Parked between measurements, connected, sending nothing.
                    while stop.load(Relaxed) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    client::send_text(&mut ws, format!("burn {BURN_MS}")).await?;
                    let answer = client::next_text(&mut ws).await.context("burner closed")?;
                    if answer != "burned" {
                        bail!("burner got {answer:?}");
                    }
                    calls.fetch_add(1, Relaxed);
                }
            }));
        }
        Ok(Burners { stop, calls, tasks })
    }

    fn set_burning(&self, on: bool) {
        self.stop.store(!on, Relaxed);
    }

    /// Fails if a burner failed (a call cut off, a connection closed).
    fn check(&self) -> Result<()> {
        if let Some(t) = self.tasks.iter().find(|t| t.is_finished()) {
            bail!("a burner stopped: {t:?}");
        }
        Ok(())
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub async fn echo_beside_burners(kit: &Kit, quick: bool) -> Result<()> {
    let rounds = if quick { 1 } else { 3 };
    let n = if quick { "1000" } else { "3000" };
    let args = ["-c", "10", "-n", n, "-s", "64"];
    println!(
        "## Fairness: echo p99 while {BURNERS} connections make another route's plugin burn {BURN_MS} ms per message\n"
    );
    println!(
        "Echo: wsload `-c 10 -n {n} -s 64` on `/echo`; the same server with the {BURNERS} `/burn` connections idle \
         and burning, alternately, {rounds} times each (server on CPU 0, clients on CPU 1).\n"
    );
    println!("| echo route | msgs/s | p50 | p99 | server CPU use | burn calls answered/s | p99 vs quiet |");
    println!("|---|---|---|---|---|---|---|");
    let server = Server::wasmsock_with(kit, BURN_ROUTE, "warn", &["probe"])?;
    let tls = client::tls(&kit.cert);
    let burners = Burners::start(&server, &tls).await?;
    let mut quiet: Vec<Value> = Vec::new();
    let mut loaded: Vec<(Value, f64)> = Vec::new();
    for _ in 0..rounds {
        for burning in [false, true] {
            burners.set_burning(burning);
            if burning {
                // Let every burner get its first call going.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let calls0 = burners.calls.load(Relaxed);
            let started = Instant::now();
            let v = crate::echo::wsload_beside(kit, &server, "/echo", &args).await?;
            let rate = (burners.calls.load(Relaxed) - calls0) as f64 / started.elapsed().as_secs_f64();
            burners.set_burning(false);
            burners.check()?;
            if burning {
                if rate < 1.0 {
                    bail!("the burners made no progress: {rate:.1} calls/s");
                }
                loaded.push((v, rate));
            } else {
                quiet.push(v);
            }
            // Let the last burns drain before the next measurement.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let quiet_p99 = median(quiet.iter().map(|v| f(v, "p99_us")).collect());
    let loaded_p99 = median(loaded.iter().map(|(v, _)| f(v, "p99_us")).collect());
    let row = |label: &str, runs: Vec<&Value>, rate: Option<f64>, p99: f64| {
        let m = |k: &str| median(runs.iter().map(|v| f(v, k)).collect());
        println!(
            "| {label} | {:.0} | {:.0} µs | {p99:.0} µs | {:.0}% | {} | {:.2} |",
            m("msgs_per_sec"),
            m("p50_us"),
            m("server_cpu_util") * 100.0,
            rate.map_or("—".into(), |r| format!("{r:.0}")),
            p99 / quiet_p99.max(1.0)
        );
    };
    row("others quiet", quiet.iter().collect(), None, quiet_p99);
    let rates = median(loaded.iter().map(|(_, r)| *r).collect());
    row(
        &format!("{BURNERS} conns burning {BURN_MS} ms/message"),
        loaded.iter().map(|(v, _)| v).collect(),
        Some(rates),
        loaded_p99,
    );
    let p99s =
        |runs: &mut dyn Iterator<Item = &Value>| runs.map(|v| format!("{:.0}", f(v, "p99_us"))).collect::<Vec<_>>();
    println!(
        "\np99 of each run (µs): quiet {:?}, burning {:?}\n",
        p99s(&mut quiet.iter()),
        p99s(&mut loaded.iter().map(|(v, _)| v))
    );
    println!("<!-- fairness quiet: {} -->", serde_json::to_string(&quiet)?);
    println!(
        "<!-- fairness burning: {} -->\n",
        serde_json::to_string(&loaded.iter().map(|(v, _)| v).collect::<Vec<_>>())?
    );
    Ok(())
}
