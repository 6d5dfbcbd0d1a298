//! Rooms across nodes through a real `redis-server`: two wasmsock nodes, clients on both, each
//! message delivered exactly once and in order, and recovery when Redis restarts.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// A `redis-server` on a free port, without persistence; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(port: Option<u16>) -> Option<Redis> {
        let exe = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())?;
        let port =
            port.unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let child = Command::new(exe)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let r = Redis { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_config(redis_port: u16, extra: &str) -> String {
    format!(
        "{}\n[broker]\nurl = \"redis://127.0.0.1:{redis_port}\"\nprefix = \"t{redis_port}\"\n{extra}\n",
        crate::rooms::CHAT
    )
}

async fn node(redis_port: u16, extra: &str) -> TestServer {
    let s = Setup::new(&node_config(redis_port, extra))
        .plugin("auth", "auth")
        .plugin("rooms", "rooms")
        .plugin("probe", "probe")
        .start()
        .await;
    assert!(connected(&s).await, "the node did not connect to Redis");
    s
}

async fn connected(s: &TestServer) -> bool {
    eventually(Duration::from_secs(15), async || s.metric("wasmsock_broker_connected").await == 1.0).await
}

async fn member(s: &TestServer, name: &str, channel: &str) -> Ws {
    let mut ws = s.connect(&format!("/chat?name={name}")).await;
    send(&mut ws, &json!({"event": "subscribe", "channel": channel}).to_string()).await;
    loop {
        let e: Value = serde_json::from_str(&recv_text(&mut ws).await).unwrap();
        if e["event"] == "subscribed" {
            return ws;
        }
    }
}

/// The next `message` event's data (presence events skipped).
async fn next_data(ws: &mut Ws) -> Value {
    loop {
        let e: Value = serde_json::from_str(&recv_text(ws).await).unwrap();
        if e["event"] == "message" {
            return e["data"].clone();
        }
    }
}

async fn publish(ws: &mut Ws, channel: &str, data: Value) {
    send(ws, &json!({"event": "publish", "channel": channel, "data": data}).to_string()).await;
}

fn skip() {
    skip_without("redis-server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_nodes_see_each_message_once_and_in_order() {
    let Some(redis) = Redis::start(None) else { return skip() };
    let a = node(redis.port, "").await;
    let b = node(redis.port, "").await;
    let mut ada = member(&a, "ada", "x").await;
    let mut bob = member(&b, "bob", "x").await;
    let mut cy = member(&a, "cy", "x").await;
    for i in 0..200 {
        publish(&mut ada, "x", json!(i)).await;
    }
    // Bob (other node) and Cy (same node) get every message once, in order; Ada, the sender,
    // gets her own once too: the broker never delivers a node's own publish a second time.
    for ws in [&mut bob, &mut cy, &mut ada] {
        for i in 0..200 {
            assert_eq!(next_data(ws).await, json!(i));
        }
    }
    publish(&mut bob, "x", json!("from b")).await;
    assert_eq!(next_data(&mut ada).await, json!("from b"));
    assert_eq!(next_data(&mut cy).await, json!("from b"));
    assert_eq!(next_data(&mut bob).await, json!("from b"));
    for ws in [&mut ada, &mut bob, &mut cy] {
        if let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(300), futures_util::StreamExt::next(ws)).await
        {
            panic!("a duplicate or stray message: {m:?}");
        }
    }
    assert!(a.metric("wasmsock_broker_published_total").await >= 200.0);
    assert!(b.metric("wasmsock_broker_received_total").await >= 200.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_survive_a_redis_restart_and_cross_node_delivery_resumes() {
    let Some(redis) = Redis::start(None) else { return skip() };
    let a = node(redis.port, "max_pending = 50").await;
    let b = node(redis.port, "max_pending = 50").await;
    let mut ada = member(&a, "ada", "y").await;
    let mut cy = member(&a, "cy", "y").await;
    let mut bob = member(&b, "bob", "y").await;

    let port = redis.kill();
    assert!(eventually(Duration::from_secs(10), async || a.metric("wasmsock_broker_connected").await == 0.0).await);
    // Local delivery goes on while Redis is down, and nothing buffers without bound.
    for i in 0..200 {
        publish(&mut ada, "y", json!(i)).await;
    }
    for i in 0..200 {
        assert_eq!(next_data(&mut cy).await, json!(i));
    }
    assert!(eventually(Duration::from_secs(10), async || a.metric("wasmsock_broker_dropped_total").await > 0.0).await);

    // Down long enough for both connections to be deep in their backoff.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Redis comes back on the same port: both nodes reconnect (with backoff) by themselves.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _redis = Redis::start(Some(port)).unwrap();
    assert!(connected(&a).await && connected(&b).await);
    assert!(a.metric("wasmsock_broker_reconnects_total").await >= 1.0);
    // What was queued while down drains once the publisher is back (it may still be in its
    // backoff when the subscription returns; `connected` covers both). A publish made while
    // the queue is still full would be dropped, as it should: wait for room first.
    assert!(eventually(Duration::from_secs(10), async || a.metric("wasmsock_broker_pending").await == 0.0).await);
    publish(&mut ada, "y", json!("after restart")).await;
    loop {
        if next_data(&mut bob).await == json!("after restart") {
            break;
        }
    }
    publish(&mut bob, "y", json!("b is back")).await;
    loop {
        if next_data(&mut ada).await == json!("b is back") {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_store_can_be_shared_by_all_nodes() {
    let Some(redis) = Redis::start(None) else { return skip() };
    let a = node(redis.port, "shared_kv = true").await;
    let b = node(redis.port, "shared_kv = true").await;
    let mut pa = a.connect("/probe").await;
    let mut pb = b.connect("/probe").await;
    send(&mut pa, "kv-set greeting hello from a").await;
    assert_eq!(recv_text(&mut pa).await, "kv-set ok");
    let mut seen = String::new();
    for _ in 0..100 {
        send(&mut pb, "kv-get greeting").await;
        seen = recv_text(&mut pb).await;
        if seen == "hello from a" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "hello from a");
    // A node that starts later loads the store from Redis.
    let c = node(redis.port, "shared_kv = true").await;
    let mut pc = c.connect("/probe").await;
    send(&mut pc, "kv-get greeting").await;
    assert_eq!(recv_text(&mut pc).await, "hello from a");
}

/// One Redis command, spoken in RESP over a plain socket; returns the first reply line.
fn redis_command(port: u16, args: &[&str]) -> String {
    use std::io::{BufRead, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    tcp.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(tcp).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_redis_refuses_does_not_stall_the_broker() {
    let Some(redis) = Redis::start(None) else { return skip() };
    // A string where this cluster keeps the probe plugin's shared store: loading it and writing
    // to it both fail in Redis (WRONGTYPE), and neither may take the nodes' rooms down.
    let hash = format!("t{}:kv:probe", redis.port);
    assert_eq!(redis_command(redis.port, &["SET", &hash, "not a hash"]), "+OK");
    let a = node(redis.port, "shared_kv = true").await;
    let b = node(redis.port, "shared_kv = true").await;
    let mut probe = a.connect("/probe").await;
    send(&mut probe, "kv-set color teal").await;
    assert_eq!(recv_text(&mut probe).await, "kv-set ok", "the local store took it");
    assert!(eventually(Duration::from_secs(5), async || a.metric("wasmsock_broker_errors_total").await >= 1.0).await);
    // Room publishes still cross nodes after the refused write.
    let mut bob = member(&b, "bob", "lobby").await;
    let mut ada = member(&a, "ada", "lobby").await;
    publish(&mut ada, "lobby", json!("after the refusal")).await;
    assert_eq!(next_data(&mut bob).await, json!("after the refusal"));
}
