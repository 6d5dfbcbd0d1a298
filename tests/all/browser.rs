//! The chat page in a real browser: two headless Chromium pages, driven over the Chrome
//! DevTools Protocol, join a channel, exchange messages, see each other's presence, and rejoin
//! by themselves after the server restarts; on a channel with history, a page that lost its
//! connection shows what was published meanwhile exactly once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

pub(crate) fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    })
}

/// A headless Chromium and a DevTools connection to it.
pub(crate) struct Browser {
    child: Child,
    cdp: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn launch(exe: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--ignore-certificate-errors",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).expect("chromium's DevTools endpoint");
        let (cdp, _) = tokio_tungstenite::connect_async(url).await.expect("connect to DevTools");
        Browser { child, cdp, next_id: 1, _profile: profile }
    }

    pub(crate) async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.cdp.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), self.cdp.next()).await.expect("DevTools reply");
            let Some(Ok(Message::Text(t))) = m else { panic!("DevTools connection ended: {m:?}") };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page; returns its session id.
    pub(crate) async fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", json!({"url": url})).await;
        let attached =
            self.call(None, "Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true})).await;
        attached["sessionId"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until it is true (within 20 s).
    pub(crate) async fn wait_for(&mut self, session: &str, expr: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if self.eval(session, expr).await == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let state = self.eval(session, "JSON.stringify(window.chat && chat.state())").await;
                panic!("timed out waiting for {expr}; page state: {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config() -> String {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/chat");
    format!("[static]\ndir = {:?}\n{}", page.canonicalize().unwrap(), crate::rooms::CHAT)
}

const CONNECTED: &str = "chat.state().status.startsWith('connected')";

fn has_message(from: &str, text: &str) -> String {
    format!(
        "chat.state().messages.some(m => m.from === '{from}' && m.text === '{text}') && [...document.querySelectorAll('#messages li.message')].some(li => li.dataset.from === '{from}' && li.querySelector('.text').textContent === '{text}')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_chat_and_rejoin_after_a_server_restart() {
    let Some(exe) = chromium() else {
        skip_without("chromium");
        return;
    };
    let s =
        Setup::new(&config()).plugin("auth", "auth").plugin("rooms", "rooms").plugin("probe", "probe").start().await;
    let port = s.addr.port();
    // The server serves the page itself.
    let mut browser = Browser::launch(&exe).await;
    let page = |name: &str| format!("https://localhost:{port}/?name={name}&channel=lobby&autoconnect=1");
    let alice = browser.open(&page("alice")).await;
    let bob = browser.open(&page("bob")).await;
    browser.wait_for(&alice, CONNECTED).await;
    browser.wait_for(&bob, CONNECTED).await;
    // Chromium offers permessage-deflate; the server agreed, keeping no context between messages.
    assert_eq!(
        browser.eval(&alice, "chat.state().extensions").await,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    // Presence: each page lists both.
    let both = "JSON.stringify(chat.state().members) === JSON.stringify(['guest-alice','guest-bob'])";
    browser.wait_for(&alice, both).await;
    browser.wait_for(&bob, both).await;
    assert_eq!(
        browser.eval(&bob, "[...document.querySelectorAll('#members li')].map(li => li.dataset.user).join(',')").await,
        "guest-alice,guest-bob"
    );

    // Alice talks, both pages show it; Bob answers.
    assert_eq!(browser.eval(&alice, "chat.send('hello from alice')").await, json!(true));
    browser.wait_for(&bob, &has_message("guest-alice", "hello from alice")).await;
    browser.wait_for(&alice, &has_message("guest-alice", "hello from alice")).await;
    browser
        .eval(
            &bob,
            "document.getElementById('message').value = 'hi alice'; document.getElementById('send').click(); true",
        )
        .await;
    browser.wait_for(&alice, &has_message("guest-bob", "hi alice")).await;
    // Text is shown as text, never as HTML.
    browser.eval(&alice, "chat.send('<b>bold</b>')").await;
    browser.wait_for(&bob, &has_message("guest-alice", "<b>bold</b>")).await;
    assert_eq!(browser.eval(&bob, "document.querySelectorAll('#messages b').length").await, json!(0));

    // The server goes away: the pages notice and retry with backoff...
    s.shutdown().await.unwrap();
    browser.wait_for(&alice, "/reconnecting|refused/.test(chat.state().status)").await;
    // ...and rejoin by themselves when a server is back on the same address.
    let restarted = Setup::new(&config())
        .plugin("auth", "auth")
        .plugin("rooms", "rooms")
        .plugin("probe", "probe")
        .listen(&format!("127.0.0.1:{port}"))
        .start()
        .await;
    browser.wait_for(&alice, CONNECTED).await;
    browser.wait_for(&bob, CONNECTED).await;
    browser.eval(&bob, "chat.send('back again')").await;
    browser.wait_for(&alice, &has_message("guest-bob", "back again")).await;
    drop(restarted);
}

/// How many times `text` from `from` is in the page's messages and on the page.
fn count_message(from: &str, text: &str) -> String {
    format!(
        "[chat.state().messages.filter(m => m.from === '{from}' && m.text === '{text}').length, [...document.querySelectorAll('#messages li.message')].filter(li => li.dataset.from === '{from}' && li.querySelector('.text').textContent === '{text}').length]"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_loses_its_connection_shows_what_was_published_meanwhile_exactly_once() {
    let Some(exe) = chromium() else {
        skip_without("chromium");
        return;
    };
    let config = format!("{}\n[[history]]\nrooms = \"lobby\"\n", config());
    let s = Setup::new(&config).plugin("auth", "auth").plugin("rooms", "rooms").plugin("probe", "probe").start().await;
    let port = s.addr.port();
    let mut browser = Browser::launch(&exe).await;
    let page = |name: &str| format!("https://localhost:{port}/?name={name}&channel=lobby&autoconnect=1");
    let alice = browser.open(&page("alice")).await;
    let bob = browser.open(&page("bob")).await;
    browser.wait_for(&alice, CONNECTED).await;
    browser.wait_for(&bob, CONNECTED).await;
    browser.eval(&bob, "chat.send('before')").await;
    browser.wait_for(&alice, &has_message("guest-bob", "before")).await;
    // The page keeps the position of what it showed.
    browser.wait_for(&alice, "chat.state().positions.lobby?.offset === 1").await;

    // Alice's connection goes away; Bob publishes while she is away (her page ignores whatever
    // still arrives on the closing socket, and retries after at least 250 ms).
    browser.eval(&alice, "chat.drop()").await;
    browser.eval(&bob, "chat.send('while you were away')").await;
    browser.wait_for(&bob, &has_message("guest-bob", "while you were away")).await;
    browser.wait_for(&alice, "!chat.state().status.startsWith('connected')").await;
    // She is back, with the message, shown once, and live messages continue.
    browser.wait_for(&alice, CONNECTED).await;
    browser.wait_for(&alice, &has_message("guest-bob", "while you were away")).await;
    browser.eval(&bob, "chat.send('after')").await;
    browser.wait_for(&alice, &has_message("guest-bob", "after")).await;
    assert_eq!(browser.eval(&alice, &count_message("guest-bob", "while you were away")).await, json!([1, 1]));
    assert_eq!(browser.eval(&alice, &count_message("guest-bob", "before")).await, json!([1, 1]));
    assert_eq!(browser.eval(&alice, "chat.state().positions.lobby.offset").await, json!(3));
    drop(s);
}

/// With `[broker]` the history is in Redis: the page's node goes down (shut down, its clients
/// told 1001) and comes back empty on the same address while another node publishes; the page
/// reconnects to it and shows the message exactly once (recovered from Redis by a node that
/// never saw it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_node_restarts_shows_what_another_node_published_meanwhile_exactly_once() {
    let Some(exe) = chromium() else {
        skip_without("chromium");
        return;
    };
    let Some(redis) = crate::broker::Redis::start(None) else { return crate::broker::skip() };
    let config = format!(
        "{}\n[broker]\nurl = \"redis://127.0.0.1:{1}\"\nprefix = \"br{1}\"\n[[history]]\nrooms = \"lobby\"\n",
        config(),
        redis.port
    );
    let node = |listen: String| {
        Setup::new(&config)
            .listen(&listen)
            .plugin("auth", "auth")
            .plugin("rooms", "rooms")
            .plugin("probe", "probe")
            .start()
    };
    let a_listen = format!("127.0.0.1:{}", free_port());
    let a = node(a_listen.clone()).await;
    let b = node("127.0.0.1:0".to_owned()).await;
    assert!(crate::broker::connected(&a).await && crate::broker::connected(&b).await);
    let mut browser = Browser::launch(&exe).await;
    let page = |port: u16, name: &str| format!("https://localhost:{port}/?name={name}&channel=lobby&autoconnect=1");
    let alice = browser.open(&page(a.addr.port(), "alice")).await;
    let bob = browser.open(&page(b.addr.port(), "bob")).await;
    browser.wait_for(&alice, CONNECTED).await;
    browser.wait_for(&bob, CONNECTED).await;
    browser.eval(&bob, "chat.send('before')").await;
    browser.wait_for(&alice, &has_message("guest-bob", "before")).await;
    browser.wait_for(&alice, "chat.state().positions.lobby?.offset === 1").await;

    // Alice's node goes down; Bob publishes on his while it is; her node comes back empty.
    a.shutdown().await.unwrap();
    browser.wait_for(&alice, "!chat.state().status.startsWith('connected')").await;
    browser.eval(&bob, "chat.send('while your node was down')").await;
    browser.wait_for(&bob, &has_message("guest-bob", "while your node was down")).await;
    let a = node(a_listen).await;
    assert!(crate::broker::connected(&a).await);
    browser.wait_for(&alice, CONNECTED).await;
    browser.wait_for(&alice, &has_message("guest-bob", "while your node was down")).await;
    browser.eval(&bob, "chat.send('after')").await;
    browser.wait_for(&alice, &has_message("guest-bob", "after")).await;
    assert_eq!(browser.eval(&alice, &count_message("guest-bob", "while your node was down")).await, json!([1, 1]));
    assert_eq!(browser.eval(&alice, &count_message("guest-bob", "before")).await, json!([1, 1]));
    assert_eq!(browser.eval(&alice, "chat.state().positions.lobby.offset").await, json!(3));
    drop((a, b));
}
