//! Servers under test, as processes pinned to CPU 0, and their CPU and memory figures.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::kit::Kit;

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub name: &'static str,
    /// wasmsock only: its working directory (plugins/, server.log).
    pub dir: Option<std::path::PathBuf>,
    /// The admin listener (`/metrics`), when asked for ([`Server::wasmsock_admin`]).
    pub admin: Option<u16>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

/// The routes every wasmsock run serves: the echo plugin, the built-in echo (no wasm), and
/// rooms without presence events (fan-out).
pub const ROUTES: &str = r#"
[[routes]]
path = "/echo"
plugins = ["echo"]
[[routes]]
path = "/native"
builtin = "echo"
[[routes]]
path = "/rooms"
plugins = ["rooms"]
[plugins.rooms.config]
presence = "false"
publish_without_subscribe = "true"
"#;

impl Server {
    /// wasmsock with `extra` config (broker, limits) on top of [`ROUTES`].
    pub fn wasmsock(kit: &Kit, extra: &str, log: &str) -> Result<Server> {
        Server::wasmsock_with(kit, extra, log, &[])
    }

    /// [`Server::wasmsock`] with more plugins in its plugin directory (`probe`, `hostile`) for
    /// routes in `extra`; `"name=file"` copies `file.wasm` as plugin `name` (a second
    /// configuration of one plugin).
    pub fn wasmsock_with(kit: &Kit, extra: &str, log: &str, more: &[&str]) -> Result<Server> {
        Server::wasmsock_opts(kit, extra, log, more, false)
    }

    /// [`Server::wasmsock_with`] with its admin listener on, for [`Server::metric`].
    pub fn wasmsock_admin(kit: &Kit, extra: &str, log: &str, more: &[&str]) -> Result<Server> {
        Server::wasmsock_opts(kit, extra, log, more, true)
    }

    fn wasmsock_opts(kit: &Kit, extra: &str, log: &str, more: &[&str], admin: bool) -> Result<Server> {
        let port = free_port();
        let dir = kit.work.join(format!("node-{port}"));
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins)?;
        for p in ["echo", "rooms"].iter().chain(more) {
            let (name, file) = p.split_once('=').unwrap_or((p, p));
            std::fs::copy(kit.plugin(file), plugins.join(format!("{name}.wasm")))?;
        }
        let admin = admin.then(free_port);
        let admin_listen = admin.map_or_else(|| "off".to_owned(), |p| format!("127.0.0.1:{p}"));
        // Thousands of clients connect at once in some scenarios; `extra` may have its own
        // [server] table, which TOML allows only once.
        let server_table = "[server]\nmax_pending_handshakes = 20000\nmax_pending_handshakes_per_ip = 20000\n";
        let extra = match extra.contains("[server]\n") {
            true => extra.replacen("[server]\n", server_table, 1),
            false => format!("{server_table}{extra}"),
        };
        let config = dir.join("wasmsock.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\nplugin_dir = {plugins:?}\nstate_dir = {:?}\n[admin]\nlisten = \"{admin_listen}\"\n[tls]\ncert = {:?}\nkey = {:?}\n{extra}\n{ROUTES}",
                dir.join("state"),
                kit.cert,
                kit.key
            ),
        )?;
        let child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(&kit.wasmsock)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("server.log"))?))
            .spawn()?;
        Server { child, port, name: "wasmsock", dir: Some(dir), admin }.ready()
    }

    /// The Go Gin + gorilla echo server (`/echo`).
    pub fn go(kit: &Kit, exe: &Path) -> Result<Server> {
        Server::go_with(kit, exe, &[])
    }

    /// The Go peer with extra flags (`-compress`).
    pub fn go_with(kit: &Kit, exe: &Path, flags: &[&str]) -> Result<Server> {
        let port = free_port();
        let child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(exe)
            .args(["-addr", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&kit.cert)
            .arg("-key")
            .arg(&kit.key)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Server { child, port, name: "go", dir: None, admin: None }.ready()
    }

    fn ready(mut self) -> Result<Server> {
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(200));
                return Ok(self);
            }
            if self.child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log =
            self.dir.as_ref().and_then(|d| std::fs::read_to_string(d.join("server.log")).ok()).unwrap_or_default();
        bail!("{} did not start listening on {}: {}", self.name, self.port, log.trim())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.port)
    }

    /// A gauge or counter (summed over its labels) from the admin listener's `/metrics`.
    pub fn metric(&self, name: &str) -> Result<f64> {
        use std::io::{Read, Write};
        let port = self.admin.context("no admin listener: Server::wasmsock_admin")?;
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
        tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut body = String::new();
        tcp.read_to_string(&mut body)?;
        let values: Vec<f64> = body
            .lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if values.is_empty() {
            bail!("no metric {name} in /metrics");
        }
        Ok(values.iter().sum())
    }

    /// The last lines of the server's log (wasmsock), for errors; slow plugin calls left out
    /// (a burst of them hides the error).
    pub fn log_tail(&self, lines: usize) -> String {
        let log =
            self.dir.as_ref().and_then(|d| std::fs::read_to_string(d.join("server.log")).ok()).unwrap_or_default();
        let all: Vec<&str> = log.lines().filter(|l| !l.contains("slow plugin call")).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn rss_kb(&self) -> u64 {
        proc_rss_kb(self.pid())
    }

    /// CPU time of all the server's threads, in nanoseconds.
    pub fn cpu_ns(&self) -> u64 {
        proc_cpu_ns(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time of all a process's threads, in nanoseconds (schedstat).
pub fn proc_cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok())
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
                .sum()
        })
        .unwrap_or(0)
}

/// (user, kernel) CPU time of a process, all threads, in clock ticks (`/proc/PID/stat`).
pub fn proc_cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is parenthesised and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (f.get(11).copied().unwrap_or(0), f.get(12).copied().unwrap_or(0))
}

pub fn proc_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
