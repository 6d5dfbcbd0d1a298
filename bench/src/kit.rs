//! What every scenario needs: the wasmsock binary, built plugins, a certificate, the Go peer.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub struct Kit {
    pub wasmsock: PathBuf,
    /// Directory with echo.wasm, echo_v2.wasm, rooms.wasm, auth.wasm, probe.wasm, hostile.wasm,
    /// proxy.wasm, outbound.wasm, pusher.wasm, api.wasm.
    pub wasm: PathBuf,
    pub work: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The Go Gin + gorilla echo server and the Go load client, if the kit is there.
    pub go_server: Option<PathBuf>,
    pub wsload: Option<PathBuf>,
    cpus: usize,
}

impl Kit {
    pub fn prepare(cpus: usize) -> Result<Kit> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
        let wasmsock =
            std::env::var_os("WASMSOCK_BIN").map(PathBuf::from).unwrap_or_else(|| root.join("target/release/wasmsock"));
        if !wasmsock.is_file() {
            bail!("{} not found: cargo build --release -p wasmsock (or set WASMSOCK_BIN)", wasmsock.display());
        }
        let status = Command::new("cargo")
            .current_dir(&root)
            .args(["build", "--quiet", "--target", "wasm32-wasip2", "--profile", "plugin"])
            .args([
                "-p",
                "echo",
                "-p",
                "test-echo-v2",
                "-p",
                "rooms",
                "-p",
                "auth",
                "-p",
                "test-probe",
                "-p",
                "test-hostile",
                "-p",
                "proxy",
                "-p",
                "test-outbound",
                "-p",
                "pusher",
                "-p",
                "api",
            ])
            .status()
            .context("building the plugins")?;
        if !status.success() {
            bail!("building the plugins failed");
        }
        let wasm = root.join("target/wasm32-wasip2/plugin");
        let work = std::env::temp_dir().join(format!("wasmsock-bench-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let cert = work.join("cert.pem");
        let key = work.join("key.pem");
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
        std::fs::write(&cert, generated.cert.pem())?;
        std::fs::write(&key, generated.signing_key.serialize_pem())?;

        let kit_dir = std::env::var_os("WSKIT").map(PathBuf::from).unwrap_or_else(|| root.join("../shared/bench"));
        let (go_server, wsload) = if kit_dir.join("build.sh").is_file() {
            let bin = kit_dir.join("bin");
            if !bin.join("wsload").is_file() || !bin.join("wss-echo-gin").is_file() {
                let _ = Command::new(kit_dir.join("build.sh")).status();
            }
            let found = |n: &str| Some(bin.join(n)).filter(|p| p.is_file());
            (found("wss-echo-gin"), found("wsload"))
        } else {
            eprintln!("note: no Go kit at {} (set WSKIT): Go comparisons are skipped", kit_dir.display());
            (None, None)
        };
        Ok(Kit { wasmsock, wasm, work, cert, key, go_server, wsload, cpus })
    }

    pub fn plugin(&self, file: &str) -> PathBuf {
        self.wasm.join(format!("{file}.wasm"))
    }

    pub fn describe(&self) -> String {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        format!("{cpu}, Linux {}, {} CPUs", kernel.trim(), self.cpus)
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Pins the calling process (and threads it starts later) to one CPU.
pub fn pin_to_cpu(cpu: usize) {
    #[allow(unsafe_code)]
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only read
    // and write that local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Median of a sample.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The `q` quantile (0..1) of a sample.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}
