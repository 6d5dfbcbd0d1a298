//! The `wasmsock` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides, Settings};

#[derive(Parser, Debug)]
#[command(name = "wasmsock", version, about = "WebSocket-over-TLS server with WebAssembly plugins")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve WebSocket routes with the plugins in a directory (reloaded when they change).
    Serve(ServeArgs),
    /// Validate a plugin file against this host's contract and describe it.
    Check {
        /// The `.wasm` file.
        file: PathBuf,
    },
    /// Create a plugin project (a Rust crate, or JavaScript, TypeScript or Python) from a template.
    New {
        /// Plugin (and crate) name: letters, digits, '-' and '_'.
        name: String,
        #[arg(long, value_enum, default_value = "echo")]
        template: crate::scaffold::Template,
        /// The plugin's language (js, ts and py have the echo template).
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Lang,
        /// Where to create it (default: the current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path of the wasmsock-sdk crate (default: the SDK this wasmsock was built with).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build plugins (Rust crates for wasm32-wasip2; JavaScript/TypeScript and Python projects
    /// with their SDK's tooling) and install them into a plugin directory.
    Build {
        /// Plugin project directories (default: the current directory).
        paths: Vec<PathBuf>,
        /// Copy the built, validated `.wasm` files into this plugin directory (atomically, so
        /// a running server reloads them at once).
        #[arg(long)]
        install: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// TOML configuration file (without it: the built-in example configuration).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:8443 (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Plugin directory to load and watch.
    #[arg(long = "plugins")]
    plugins: Option<PathBuf>,
    /// A route, PATH=PLUGIN[,PLUGIN...]; repeatable; replaces a configured route of that path.
    #[arg(long = "route", value_name = "PATH=PLUGINS")]
    routes: Vec<String>,
    /// PEM certificate chain (with --key); without both a development certificate is used.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Serve ws:// without TLS (behind a TLS-terminating proxy, or for conformance tools).
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    plain: bool,
    /// Log format: text or json.
    #[arg(long, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Admin listener for /metrics, /healthz, /readyz and /plugins ("off" to disable).
    #[arg(long)]
    admin: Option<String>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("unknown log format {s:?} (text or json)")),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check { file } => check(&file),
        Command::New { name, template, lang, dir, sdk } => {
            crate::scaffold::new_plugin(&name, template, lang, dir.as_deref(), sdk.as_deref()).map(|path| {
                println!("created {} ({lang:?}, {template:?} template)", path.display());
                let test = match lang {
                    crate::scaffold::Lang::Rust => "cargo test",
                    crate::scaffold::Lang::Js | crate::scaffold::Lang::Ts => "npm install && npm test",
                    crate::scaffold::Lang::Py => "see README.md for the test command",
                };
                println!("next: cd {} && {test} && wasmsock build --install <plugin dir>", path.display());
                ExitCode::SUCCESS
            })
        }
        Command::Build { paths, install } => {
            crate::build::build(&paths, install.as_deref()).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wasmsock: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let overrides = Overrides {
        listen: args.listen,
        plugin_dir: args.plugins,
        routes: args.routes,
        cert: args.cert,
        key: args.key,
        plain: args.plain,
        log_format: args.log_format,
        admin: args.admin,
    };
    let settings = Settings::load(args.config.as_deref(), &overrides)?;
    init_tracing(settings.log_format);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("wasmsock-worker")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // Handlers first: a signal that arrives while starting must not kill the process.
        let signals = Signals::install()?;
        let server = crate::Server::bind(settings).await?;
        server.announce();
        server.run(signals.first()).await
    })?;
    // The server has ended every connection; do not wait on anything the runtime still holds.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM: the first starts a graceful shutdown, a second one exits at once.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn first(mut self) {
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "graceful shutdown started (send the signal again to exit at once)");
        tokio::spawn(async move {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
            eprintln!("wasmsock: second signal, exiting now");
            std::process::exit(130);
        });
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn check(file: &std::path::Path) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let settings = Settings::from_toml("", &Overrides::default())?;
    let runtime = crate::plugin::Runtime::new(&settings.engine)?;
    match crate::plugin::check_bytes(&runtime, &bytes) {
        Ok(summary) => {
            let name = crate::plugin::plugin_name(file).unwrap_or_else(|| "(not a valid plugin file name)".into());
            println!("plugin:    {name}");
            println!("file:      {} ({} bytes)", file.display(), bytes.len());
            println!(
                "contract:  {}@{} (this host: {})",
                crate::plugin::CONTRACT_PACKAGE,
                summary.contract.as_deref().unwrap_or("?"),
                crate::plugin::CONTRACT_VERSION
            );
            println!("exports:");
            for e in &summary.exports {
                println!("  {e}");
            }
            println!("imports:");
            for i in &summary.imports {
                let note = if crate::plugin::is_trapped_import(i) { "  (not provided: calls trap)" } else { "" };
                println!("  {i}{note}");
            }
            println!("ok: compatible with this host");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("wasmsock check: {}: {e:#}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}
