//! Test harness: a real wasmsock server in-process on port 0 with a temporary plugin directory,
//! real TLS (the dev certificate or a given one) and real WebSocket clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use wasmsock::plugin::LoadOutcome;
use wasmsock::{Overrides, Server, Settings};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where the build script put the wasm plugins.
pub fn wasm(name: &str) -> PathBuf {
    let file = name.replace('-', "_");
    Path::new(env!("WASM_PLUGIN_DIR")).join(format!("{file}.wasm"))
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub plugin_dir: PathBuf,
    pub ca: Option<PathBuf>,
    pub plain: bool,
    reloads: mpsc::UnboundedReceiver<LoadOutcome>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

/// Builder for a test server.
pub struct Setup {
    toml: String,
    plugins: Vec<(String, String)>,
    plugin_files: Vec<(String, PathBuf)>,
    plain: bool,
    listen: String,
}

impl Setup {
    /// `toml` is the config without `listen`, `plugin_dir`, `state_dir` or `admin`.
    pub fn new(toml: &str) -> Setup {
        Setup {
            toml: toml.to_owned(),
            plugins: Vec::new(),
            plugin_files: Vec::new(),
            plain: false,
            listen: "127.0.0.1:0".into(),
        }
    }

    /// Installs plugin file `file` (a built plugin's name) as `name`.
    pub fn plugin(mut self, name: &str, file: &str) -> Setup {
        self.plugins.push((name.to_owned(), file.to_owned()));
        self
    }

    /// Installs the plugin file at `path` (built outside cargo, e.g. a JavaScript plugin) as `name`.
    pub fn plugin_file(mut self, name: &str, path: &Path) -> Setup {
        self.plugin_files.push((name.to_owned(), path.to_owned()));
        self
    }

    /// Listens on `addr` instead of a free port.
    pub fn listen(mut self, addr: &str) -> Setup {
        self.listen = addr.to_owned();
        self
    }

    pub fn plain(mut self) -> Setup {
        self.plain = true;
        self
    }

    pub async fn start(self) -> TestServer {
        self.try_start().await.expect("test server starts")
    }

    pub async fn try_start(self) -> Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir)?;
        for (name, file) in &self.plugins {
            std::fs::copy(wasm(file), plugin_dir.join(format!("{name}.wasm")))
                .with_context(|| format!("copying plugin {file}"))?;
        }
        for (name, path) in &self.plugin_files {
            std::fs::copy(path, plugin_dir.join(format!("{name}.wasm")))
                .with_context(|| format!("copying plugin {}", path.display()))?;
        }
        let toml = format!(
            "listen = {:?}\nplugin_dir = {:?}\nstate_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            self.listen,
            plugin_dir,
            dir.path().join("state"),
            self.toml
        );
        let overrides = Overrides { plain: self.plain, ..Overrides::default() };
        let settings = Settings::from_toml(&toml, &overrides)?;
        let (tx, reloads) = mpsc::unbounded_channel();
        let server = Server::bind_with(settings, Some(tx)).await?;
        let addr = server.local_addrs()[0];
        let admin = server.admin_addr();
        let ca = server.dev_cert.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let mut s = TestServer {
            addr,
            admin,
            dir,
            plugin_dir,
            ca,
            plain: self.plain,
            reloads,
            stop: Some(stop),
            task: Some(task),
        };
        // Drain the initial load outcomes.
        while s.reloads.try_recv().is_ok() {}
        Ok(s)
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.plain { "ws" } else { "wss" };
        format!("{scheme}://localhost:{}{path}", self.addr.port())
    }

    pub fn tls_client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config(self.ca.as_deref().expect("TLS server"), None)
    }

    /// Connects a WebSocket client to `path` (which may carry a query).
    pub async fn connect(&self, path: &str) -> Ws {
        self.try_connect(path).await.unwrap_or_else(|e| panic!("connect {path}: {e}"))
    }

    pub async fn try_connect(&self, path: &str) -> Result<Ws, tungstenite::Error> {
        let req = self.url(path).into_client_request()?;
        self.connect_request(req).await
    }

    pub async fn connect_request(
        &self,
        req: tungstenite::handshake::client::Request,
    ) -> Result<Ws, tungstenite::Error> {
        let connector = if self.plain { Connector::Plain } else { Connector::Rustls(self.tls_client_config()) };
        let tcp = TcpStream::connect(self.addr).await.map_err(tungstenite::Error::Io)?;
        let (ws, _) = tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector)).await?;
        Ok(ws)
    }

    /// Expects the handshake to be refused; returns (status, body).
    pub async fn refused(&self, path: &str) -> (u16, String) {
        match self.try_connect(path).await {
            Ok(_) => panic!("{path}: expected the handshake to be refused, but it was accepted"),
            Err(tungstenite::Error::Http(resp)) => {
                let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                (resp.status().as_u16(), body)
            }
            Err(e) => panic!("{path}: expected an HTTP refusal, got {e}"),
        }
    }

    /// Copies a plugin file into the plugin directory atomically (write + rename) and waits for
    /// the reload outcome of `name`.
    pub async fn install(&mut self, name: &str, file: &str) -> LoadOutcome {
        self.drain_outcomes();
        let tmp = self.plugin_dir.join(format!(".{name}.wasm.tmp"));
        std::fs::copy(wasm(file), &tmp).expect("copy plugin");
        std::fs::rename(&tmp, self.plugin_dir.join(format!("{name}.wasm"))).expect("rename plugin");
        self.next_outcome(name).await
    }

    /// Copies the plugin file at `path` in as `name` (write + rename) and waits up to `limit`
    /// for the outcome (a JavaScript or Python plugin takes seconds to compile).
    pub async fn install_path(&mut self, name: &str, path: &Path, limit: Duration) -> LoadOutcome {
        self.drain_outcomes();
        let tmp = self.plugin_dir.join(format!(".{name}.wasm.tmp"));
        std::fs::copy(path, &tmp).expect("copy plugin");
        std::fs::rename(&tmp, self.plugin_dir.join(format!("{name}.wasm"))).expect("rename plugin");
        self.next_outcome_within(name, limit).await
    }

    /// Writes raw bytes as plugin `name` and waits for the outcome.
    pub async fn install_bytes(&mut self, name: &str, bytes: &[u8]) -> LoadOutcome {
        self.drain_outcomes();
        let tmp = self.plugin_dir.join(format!(".{name}.wasm.tmp"));
        std::fs::write(&tmp, bytes).expect("write plugin");
        std::fs::rename(&tmp, self.plugin_dir.join(format!("{name}.wasm"))).expect("rename plugin");
        self.next_outcome(name).await
    }

    pub async fn remove(&mut self, name: &str) -> LoadOutcome {
        self.drain_outcomes();
        std::fs::remove_file(self.plugin_dir.join(format!("{name}.wasm"))).expect("remove plugin");
        self.next_outcome(name).await
    }

    /// Forgets outcomes of earlier changes (the watcher may report one change more than once).
    fn drain_outcomes(&mut self) {
        while self.reloads.try_recv().is_ok() {}
    }

    /// The outcomes reported since the last call that waited for one, other than `Unchanged`
    /// (a change event for a file whose content did not change).
    pub fn outcomes_since(&mut self) -> Vec<LoadOutcome> {
        std::iter::from_fn(|| self.reloads.try_recv().ok())
            .filter(|o| !matches!(o, LoadOutcome::Unchanged { .. }))
            .collect()
    }

    /// The next load outcome concerning `name` (within 20 s). A repeated report of a file
    /// already loaded (`Unchanged`) is skipped: it is not news.
    pub async fn next_outcome(&mut self, name: &str) -> LoadOutcome {
        self.next_outcome_within(name, Duration::from_secs(20)).await
    }

    /// The next load outcome concerning `name`, within `limit`.
    pub async fn next_outcome_within(&mut self, name: &str, limit: Duration) -> LoadOutcome {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let o = tokio::time::timeout_at(deadline, self.reloads.recv())
                .await
                .unwrap_or_else(|_| panic!("no reload outcome for {name} within {limit:?}"))
                .expect("reload channel open");
            let concerns = match &o {
                LoadOutcome::Loaded { name: n, .. }
                | LoadOutcome::Failed { name: n, .. }
                | LoadOutcome::Unloaded { name: n } => n == name,
                LoadOutcome::Unchanged { .. } | LoadOutcome::Ignored { .. } => false,
            };
            if concerns {
                return o;
            }
        }
    }

    /// GET on the admin listener; returns (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin.expect("admin listener"), path).await.expect("admin request")
    }

    /// Plugin `name`'s row of the admin listener's `/plugins` listing.
    pub async fn plugin_listing(&self, name: &str) -> serde_json::Value {
        let (status, body) = self.admin_get("/plugins").await;
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let row = list.as_array().unwrap().iter().find(|p| p["name"] == name).cloned();
        row.unwrap_or_else(|| panic!("{name} not listed: {list}"))
    }

    /// The value of a metric line (exact name with labels) on /metrics, 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.admin_get("/metrics").await;
        metric_value(&body, series)
    }

    /// Triggers graceful shutdown and waits for the server to finish.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(t) => t.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn metric_value(body: &str, series: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A rustls client config trusting `ca`, optionally presenting a client certificate.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).expect("client cert").map(|c| c.expect("PEM")).collect();
            let key = PrivateKeyDer::from_pem_file(key).expect("client key");
            builder.with_client_auth_cert(chain, key).expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Plain HTTP/1.1 GET (the admin listener).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).context("status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Sends a text message.
pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// The next data message as text (pings and pongs skipped), within 10 s.
pub async fn recv_text(ws: &mut Ws) -> String {
    match next_data(ws).await {
        Some(Message::Text(t)) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next data or close message, within 10 s (`None` when the stream ended).
pub async fn next_data(ws: &mut Ws) -> Option<Message> {
    next_data_within(ws, Duration::from_secs(10)).await
}

pub async fn next_data_within(ws: &mut Ws, limit: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.expect("timed out waiting for a message");
        match msg {
            None => return None,
            Some(Err(_)) => return None,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
        }
    }
}

/// Reads until the server's close frame; returns its code and reason (or 1006 if the stream
/// ended without one).
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match next_data(ws).await {
            Some(Message::Close(Some(CloseFrame { code, reason }))) => {
                return (code.into(), reason.to_string());
            }
            Some(Message::Close(None)) => return (1005, String::new()),
            Some(_) => continue,
            None => return (1006, String::new()),
        }
    }
}

/// Polls `f` every 20 ms until it returns true, for at most `limit`.
pub async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails unless `cond`, with a message (for use in Result-returning helpers).
pub fn ensure(cond: bool, msg: &str) -> Result<()> {
    if !cond {
        bail!("{msg}");
    }
    Ok(())
}

/// An HS256 JWT for `claims`, signed with `secret`.
pub fn hs256_token(claims: &serde_json::Value, secret: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let input = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `file`'s bytes with a custom section appended: the same plugin under a new hash, so
/// installing it is a real reload (new compile, new instances) with unchanged behaviour.
pub fn rebuilt(file: &str, tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(wasm(file)).expect("read plugin");
    let name = b"wasmsock-test";
    let payload = tag.as_bytes();
    let body_len = 1 + name.len() + payload.len();
    bytes.push(0); // custom section id
    bytes.push(body_len as u8); // (test tags are short: a one-byte LEB128)
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

/// A test that needs an outside tool (redis-server, chromium, wscat, Python's websockets) skips
/// with this message when the tool is absent, except where `WASMSOCK_REQUIRE_TOOLS` is set (CI),
/// where a missing tool fails the test instead of passing silently.
pub fn skip_without(tool: &str) {
    if std::env::var_os("WASMSOCK_REQUIRE_TOOLS").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{tool} is required (WASMSOCK_REQUIRE_TOOLS is set) but not installed");
    }
    eprintln!("SKIP: {tool} is not installed (./test.sh installs it when run as root)");
}

/// A port that was free a moment ago (for servers that cannot bind port 0 themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `child` (named `what`) listens on 127.0.0.1:`port`; panics if it exits first
/// (the port was taken, or it refused its arguments) or is not listening within 5 s.
pub fn wait_listening(child: &mut std::process::Child, port: u16, what: &str) {
    for _ in 0..100 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start ({status}) on port {port}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on port {port}");
}

/// The WebSocket handshake with `s` for `path`, over TLS on an already connected socket,
/// presenting `client` (certificate and key files) if given.
pub async fn wss_over(
    s: &TestServer,
    tcp: TcpStream,
    path: &str,
    client: Option<(&Path, &Path)>,
) -> Result<Ws, String> {
    let config = client_config(s.ca.as_deref().expect("TLS server"), client);
    let req = s.url(path).into_client_request().map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(Connector::Rustls(config)))
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// Certificates for tests, written as `<stem>.pem` and `<stem>.key` in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        Pki { dir: tempfile::tempdir().unwrap() }
    }

    /// A self-signed CA named `cn`, written as `<stem>.pem`.
    pub fn ca(&self, stem: &str, cn: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(self.path(&format!("{stem}.pem")), ca.pem()).unwrap();
        ca
    }

    /// A certificate for `san`, subject `CN=<cn>, O=wasmsock tests`, for `usage`, signed by
    /// `issuer`.
    pub fn leaf(
        &self,
        issuer: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
        stem: &str,
        cn: &str,
        san: &str,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![san.to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, "wasmsock tests");
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, issuer).unwrap();
        std::fs::write(self.path(&format!("{stem}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{stem}.key")), key.serialize_pem()).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A masked client frame, for raw-socket tests (RSV1 marks a compressed message).
pub fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x1b, 0x2c, 0x3d, 0x4e];
    let mut f = vec![(if fin { 0x80 } else { 0 }) | (if rsv1 { 0x40 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}
