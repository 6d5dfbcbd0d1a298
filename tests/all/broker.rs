//! Rooms across nodes through a real `redis-server`: two wasmsock nodes, clients on both, each
//! message delivered exactly once and in order, and recovery when Redis restarts.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// A `redis-server` on a free port, without persistence; killed on drop.
pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
}

impl Redis {
    pub(crate) fn start(port: Option<u16>) -> Option<Redis> {
        Redis::spawn(port, &[])
    }

    /// Redis that writes every change to an append-only file in `dir` before answering, so a
    /// SIGKILL loses nothing and a restart on the same `dir` has all of it.
    pub(crate) fn start_persistent(port: Option<u16>, dir: &std::path::Path) -> Option<Redis> {
        let dir = dir.to_string_lossy().into_owned();
        let args = ["--appendonly", "yes", "--appendfsync", "always", "--dir", &dir];
        Redis::spawn(port, &args.map(String::from))
    }

    /// Redis on TLS only (no plain port), with a password and client certificates required.
    fn start_tls(pki: &Pki, password: &str) -> Option<Redis> {
        let p = |name: &str| pki.path(name).to_string_lossy().into_owned();
        let port = free_port();
        let args = [
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            p("redis.pem"),
            "--tls-key-file".into(),
            p("redis.key"),
            "--tls-ca-cert-file".into(),
            p("ca.pem"),
            "--tls-auth-clients".into(),
            "yes".into(),
            "--requirepass".into(),
            password.into(),
        ];
        Redis::spawn(Some(port), &args)
    }

    fn spawn(port: Option<u16>, extra: &[String]) -> Option<Redis> {
        let exe = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())?;
        let port = port.unwrap_or_else(free_port);
        let child = Command::new(exe)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut r = Redis { child, port };
        // Exiting at start: the port was taken, or (for TLS) redis-server was built without it.
        wait_listening(&mut r.child, port, "redis-server");
        Some(r)
    }

    pub(crate) fn kill(mut self) -> u16 {
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

/// A node whose `[broker]` section is `broker` (not waiting for Redis).
async fn start_node(broker: &str) -> TestServer {
    Setup::new(&format!("{}\n[broker]\n{broker}\n", crate::rooms::CHAT))
        .plugin("auth", "auth")
        .plugin("rooms", "rooms")
        .plugin("probe", "probe")
        .start()
        .await
}

async fn node(redis_port: u16, extra: &str) -> TestServer {
    let s = start_node(&format!("url = \"redis://127.0.0.1:{redis_port}\"\nprefix = \"t{redis_port}\"\n{extra}")).await;
    assert!(connected(&s).await, "the node did not connect to Redis");
    s
}

pub(crate) async fn connected(s: &TestServer) -> bool {
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

pub(crate) fn skip() {
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

    // Down long enough for both connections to be into their backoff (short, since another
    // test could take the free port meanwhile).
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Redis comes back on the same port: both nodes reconnect (with backoff) by themselves.
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

    // Changes made in Redis while the nodes were not listening (here by hand, so no node hears
    // of them) are picked up when a node's subscription comes back.
    let hash = format!("t{}:kv:probe", redis.port);
    assert_eq!(redis_command(redis.port, &["HSET", &hash, "greeting", "changed in redis"]), ":0");
    assert_eq!(redis_command(redis.port, &["HSET", &hash, "motd", "set in redis"]), ":1");
    send(&mut pb, "kv-get motd").await;
    assert_eq!(recv_text(&mut pb).await, "(none)", "not heard of yet");
    let before = b.metric("wasmsock_broker_reconnects_total").await;
    assert_ne!(redis_command(redis.port, &["CLIENT", "KILL", "TYPE", "pubsub"]), ":0");
    let reconnected = async || b.metric("wasmsock_broker_reconnects_total").await > before;
    assert!(eventually(Duration::from_secs(10), reconnected).await && connected(&b).await);
    send(&mut pb, "kv-get greeting").await;
    assert_eq!(recv_text(&mut pb).await, "changed in redis");
    send(&mut pb, "kv-get motd").await;
    assert_eq!(recv_text(&mut pb).await, "set in redis");
}

/// A CA, Redis's server certificate (for 127.0.0.1) and a client certificate, all signed by it.
fn redis_pki() -> Pki {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let pki = Pki::new();
    let ca = pki.ca("ca", "redis test CA");
    pki.leaf(&ca, "redis", "redis", "127.0.0.1", ServerAuth);
    pki.leaf(&ca, "node", "node", "node.client", ClientAuth);
    pki
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_redis_over_tls_with_a_password_and_a_client_certificate() {
    let pki = redis_pki();
    let Some(redis) = Redis::start_tls(&pki, "s3cret") else { return skip() };
    let broker = |password: &str, cert: bool| {
        let mut b = format!(
            "url = \"rediss://127.0.0.1:{}\"\nprefix = \"tls\"\npassword = {password:?}\nca = {:?}\n",
            redis.port,
            pki.path("ca.pem")
        );
        if cert {
            b += &format!("cert = {:?}\nkey = {:?}\n", pki.path("node.pem"), pki.path("node.key"));
        }
        b
    };
    let a = start_node(&broker("s3cret", true)).await;
    let b = start_node(&broker("s3cret", true)).await;
    assert!(connected(&a).await && connected(&b).await, "the nodes did not connect over TLS");
    let mut ada = member(&a, "ada", "z").await;
    let mut bob = member(&b, "bob", "z").await;
    publish(&mut ada, "z", json!("over tls")).await;
    assert_eq!(next_data(&mut bob).await, json!("over tls"));
    assert_eq!(next_data(&mut ada).await, json!("over tls"), "the sender's own copy");
    publish(&mut bob, "z", json!("and back")).await;
    assert_eq!(next_data(&mut ada).await, json!("and back"));
    // A wrong password, or no client certificate, keeps a node off Redis: it says so in its
    // metrics, keeps retrying, and still serves its own clients.
    for (what, node) in [
        ("a wrong password", start_node(&broker("guess", true)).await),
        ("no client certificate", start_node(&broker("s3cret", false)).await),
    ] {
        let refused = async || node.metric("wasmsock_broker_errors_total").await >= 2.0;
        assert!(eventually(Duration::from_secs(10), refused).await, "{what}: no errors counted");
        assert_eq!(node.metric("wasmsock_broker_connected").await, 0.0, "{what}: connected");
        let mut cy = member(&node, "cy", "z").await;
        publish(&mut cy, "z", json!("local only")).await;
        assert_eq!(next_data(&mut cy).await, json!("local only"), "{what}: local delivery");
    }
    assert_eq!(next_data_or_none(&mut ada).await, None, "nothing from the refused nodes");
}

/// The next `message` event within a second, if any.
async fn next_data_or_none(ws: &mut Ws) -> Option<Value> {
    tokio::time::timeout(Duration::from_secs(1), next_data(ws)).await.ok()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_voters_split_across_two_nodes_lose_no_vote() {
    use crate::state::{counts, vote};
    let Some(redis) = Redis::start(None) else { return skip() };
    // A compare-and-set loop reads its node's copy, which trails Redis while 200 voters race:
    // its retries may take more than the default 50 ms of plugin CPU on a loaded machine.
    let config = "shared_kv = true\n[plugins.probe]\ndeadline = \"2s\"";
    let a = node(redis.port, config).await;
    let b = node(redis.port, config).await;
    // Half the voters on each node, all at once: Redis decides every increment.
    let replies = vote(&[&a, &b], 200, "kv-incr votes:yes").await;
    assert_eq!(counts(&replies), (1..=200).collect::<Vec<_>>(), "each vote counted once, across nodes");
    let replies = vote(&[&a, &b], 200, "kv-cas-incr votes:cas").await;
    assert_eq!(counts(&replies), (1..=200).collect::<Vec<_>>(), "compare-and-set: two nodes never both win");
    let hash = format!("t{}:kv:probe", redis.port);
    assert_eq!(redis_command(redis.port, &["HGET", &hash, "votes:yes"]), "$3");
    // Every node's copy follows Redis, in Redis's order.
    for node in [&a, &b] {
        let mut ws = node.connect("/probe").await;
        let settled = eventually(Duration::from_secs(5), async || {
            send(&mut ws, "kv-get votes:yes").await;
            let yes = recv_text(&mut ws).await;
            send(&mut ws, "kv-get votes:cas").await;
            yes == "200" && recv_text(&mut ws).await == "200"
        })
        .await;
        assert!(settled, "a node's copy did not reach 200");
    }
    // Redis down: atomic operations fail (`unavailable`) instead of deciding alone.
    redis.kill();
    let mut ws = a.connect("/probe").await;
    let failed = eventually(Duration::from_secs(10), async || {
        send(&mut ws, "kv-incr votes:yes").await;
        recv_text(&mut ws).await == "kv-incr failed: unavailable"
    })
    .await;
    assert!(failed);
}

/// The users calls reach a user's connections on every node: sent in order, closed everywhere,
/// once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_connections_on_every_node_are_reached_in_order_and_closed() {
    use crate::http_routes::{CONFIG, Client};
    let Some(redis) = Redis::start(None) else { return skip() };
    let config = format!("{CONFIG}\n[broker]\nurl = \"redis://127.0.0.1:{0}\"\nprefix = \"u{0}\"\n", redis.port);
    let start = || Setup::new(&config).plugin("probe", "probe").plugin("legacy", "legacy-v0-1").start();
    let (a, b) = (start().await, start().await);
    assert!(connected(&a).await && connected(&b).await, "the nodes did not connect to Redis");
    let mut ada_a = a.connect("/ws?as=ada").await;
    let mut ada_b = b.connect("/ws?as=ada").await;
    let mut bob_b = b.connect("/ws?as=bob").await;
    let mut backend = Client::new(&a).await;
    assert_eq!(backend.request("GET", "/h/count?user=ada", "").await.json()["count"], 1, "this node's count");
    for i in 0..100 {
        let r = backend.request("POST", "/h/send?user=ada", &format!("n{i}")).await;
        assert_eq!(r.json()["queued"], 1, "queued to the local connection, the other node's via Redis");
    }
    for ws in [&mut ada_a, &mut ada_b] {
        for i in 0..100 {
            assert_eq!(recv_text(ws).await, format!("n{i}"));
        }
    }
    assert_eq!(backend.request("POST", "/h/close?user=ada", "").await.json()["closed"], 1);
    assert_eq!(expect_close(&mut ada_a).await.0, 4001);
    assert_eq!(expect_close(&mut ada_b).await, (4001, "closed by the backend".into()));
    // Nobody else got anything, and nothing came twice.
    send(&mut bob_b, "whoami").await;
    assert_eq!(recv_text(&mut bob_b).await, "bob");
    if let Ok(Some(Ok(m))) =
        tokio::time::timeout(Duration::from_millis(300), futures_util::StreamExt::next(&mut bob_b)).await
    {
        panic!("a stray message: {m:?}");
    }
}

/// A user's connections are counted on every node: closes are followed, a Redis restarted
/// empty gets every node's numbers again, a node killed with SIGKILL stops counting within
/// `node_ttl`, and with Redis down the count across nodes says it cannot be known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_connections_are_counted_on_every_node_and_a_killed_node_stops_counting() {
    use crate::http_routes::{CONFIG, Client};
    use crate::process::Proc;
    let Some(redis) = Redis::start(None) else { return skip() };
    let broker =
        format!("[broker]\nurl = \"redis://127.0.0.1:{0}\"\nprefix = \"c{0}\"\nnode_ttl = \"1s\"\n", redis.port);
    let a = Setup::new(&format!("{CONFIG}\n{broker}"))
        .plugin("probe", "probe")
        .plugin("legacy", "legacy-v0-1")
        .start()
        .await;
    assert!(connected(&a).await, "node A did not connect to Redis");
    // Node B is a process of its own, so that it can be killed.
    let b = Proc::start("[[routes]]\npath = \"/ws\"\nplugins = [\"probe\"]\n", &["probe"], &broker);
    let _ada_a = [a.connect("/ws?as=ada").await, a.connect("/ws?as=ada").await];
    let mut ada_b = [b.connect("/ws?as=ada").await, b.connect("/ws?as=ada").await];
    let _bob_b = b.connect("/ws?as=bob").await;
    let mut backend = Client::new(&a).await;
    let mut count = async |user: &str| backend.request("GET", &format!("/h/count?user={user}"), "").await.json();
    let everywhere = |v: &Value| v["everywhere"].as_u64();
    assert!(
        eventually(Duration::from_secs(10), async || everywhere(&count("ada").await) == Some(4)).await,
        "two connections here and two on node B: {}",
        count("ada").await
    );
    assert_eq!(count("ada").await["count"], 2, "this node's");
    // Node B's write for bob may follow its writes for ada in a later batch.
    assert!(eventually(Duration::from_secs(10), async || everywhere(&count("bob").await) == Some(1)).await);
    assert_eq!(everywhere(&count("cy").await), Some(0));

    // A close on node B is followed.
    drop(ada_b[1].close(None).await);
    assert!(eventually(Duration::from_secs(10), async || everywhere(&count("ada").await) == Some(3)).await);

    // Redis restarted empty: node B writes its numbers again.
    let port = redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis = Redis::start(Some(port)).unwrap();
    assert!(connected(&a).await, "node A did not reconnect");
    assert!(
        eventually(Duration::from_secs(15), async || everywhere(&count("ada").await) == Some(3)).await,
        "node B's numbers are back: {}",
        count("ada").await
    );

    // Node B killed: its connections stop counting within node_ttl (1 s), give or take a
    // heartbeat and this machine's load.
    let killed = std::time::Instant::now();
    drop(b);
    assert!(eventually(Duration::from_secs(10), async || everywhere(&count("ada").await) == Some(2)).await);
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(4), "node B still counted {took:?} after it was killed");
    eprintln!("a killed node stopped counting after {took:?} (node_ttl 1s)");

    // Redis down: the count across nodes cannot be known; this node's still can.
    redis.kill();
    assert!(eventually(Duration::from_secs(10), async || count("ada").await["everywhere"].is_null()).await);
    assert_eq!(count("ada").await["count"], 2);
}

/// The API publish measurement across two nodes: the backend publishes on one node, the 100
/// subscribers are on the other (see `crate::api::measure`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; see BENCHMARKS.md"]
async fn api_publish_to_a_room_of_100_two_nodes() {
    let Some(redis) = Redis::start(None) else { return skip() };
    let broker = format!("[broker]\nurl = \"redis://127.0.0.1:{0}\"\nprefix = \"b{0}\"", redis.port);
    let (a, b) = (crate::api::server_with(&broker).await, crate::api::server_with(&broker).await);
    assert!(connected(&a).await && connected(&b).await);
    crate::api::measure(&a, &b, "two nodes (publish on A, members on B)").await;
}

/// The orders-feed example on two nodes: the backend publishes on node A, the subscriber
/// listens on node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_feed_example_on_two_nodes() {
    let Some(redis) = Redis::start(None) else { return skip() };
    let broker = format!("[broker]\nurl = \"redis://127.0.0.1:{0}\"\nprefix = \"o{0}\"", redis.port);
    let (a, b) = (crate::api::orders_node(&broker).await, crate::api::orders_node(&broker).await);
    assert!(connected(&a).await && connected(&b).await);
    crate::api::orders_feed(&a, &b).await;
}

/// Redis Sentinel: a master, its replica, and three sentinels (quorum 2) watching them.
struct SentinelSetup {
    master: Option<Redis>,
    replica: Redis,
    sentinels: Vec<Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl SentinelSetup {
    fn start() -> Option<SentinelSetup> {
        // The replica's full sync writes an RDB file to its working directory: keep it there.
        let dir = tempfile::tempdir().ok()?;
        let in_dir = ["--dir".to_owned(), dir.path().to_string_lossy().into_owned()];
        let master = Redis::spawn(None, &in_dir)?;
        let replicaof = ["--replicaof".into(), "127.0.0.1".into(), master.port.to_string()];
        let replica = Redis::spawn(None, &[&in_dir[..], &replicaof[..]].concat())?;
        let mut sentinels = Vec::new();
        let mut ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            // Sentinels rewrite their configuration file: each has its own.
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor main 127.0.0.1 {} 2\nsentinel down-after-milliseconds main 1000\nsentinel failover-timeout main 5000\n",
                master.port
            );
            std::fs::write(&conf, text).ok()?;
            let mut child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            wait_listening(&mut child, port, "redis-server --sentinel");
            sentinels.push(child);
            ports.push(port);
        }
        let setup = SentinelSetup { master: Some(master), replica, sentinels, ports, _dir: dir };
        // Ready when the replica is in sync and every sentinel knows it and the others.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let synced = redis_info(setup.replica.port, "master_link_status") == "up";
            let known = setup.ports.iter().all(|p| {
                redis_lines(*p, &["SENTINEL", "MASTER", "main"])
                    .windows(2)
                    .any(|w| w[0] == "num-other-sentinels" && w[1] == "2")
                    && redis_lines(*p, &["SENTINEL", "REPLICAS", "main"]).len() > 1
            });
            if synced && known {
                return Some(setup);
            }
            assert!(std::time::Instant::now() < deadline, "the sentinels did not settle");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The master's port as the first sentinel names it.
    fn master_port(&self) -> u16 {
        sentinel_master(self.ports[0])
    }

    fn broker(&self, prefix: &str) -> String {
        let list: Vec<String> = self.ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        // A short node_ttl: the nodes look at each other (heartbeats, subscriptions seen) every 200 ms.
        format!("sentinels = [{}]\nmaster_name = \"main\"\nprefix = \"{prefix}\"\nnode_ttl = \"1s\"\n", list.join(", "))
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for c in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The master's port as the sentinel at `port` names it (0: no answer).
fn sentinel_master(port: u16) -> u16 {
    redis_lines(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "main"]).get(1).and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// A reply's lines without RESP framing (`*`, `$` lines), for simple arrays of bulk strings.
fn redis_lines(port: u16, args: &[&str]) -> Vec<String> {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return Vec::new() };
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let _ = tcp.write_all(req.as_bytes());
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    while let Ok(n) = tcp.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
        .map(str::to_owned)
        .collect()
}

/// One field of `INFO` (empty when absent).
fn redis_info(port: u16, field: &str) -> String {
    redis_lines(port, &["INFO"])
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

/// Nodes configured with sentinels find the master through them, and when the master is
/// killed they follow the failover: cross-node delivery resumes on the promoted replica, and
/// what was published meanwhile arrives too (the publishing node waits for the others'
/// subscriptions before sending its backlog; Redis pub/sub keeps nothing for a subscriber that
/// is still reconnecting). The figures are printed: `cargo test --workspace --test all -- broker::nodes_follow --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_sentinel_failover_and_cross_node_delivery_resumes() {
    use futures_util::{SinkExt, StreamExt};
    let Some(mut setup) = SentinelSetup::start() else { return skip() };
    let (old_master, replica) = (setup.master_port(), setup.replica.port);
    assert_ne!(old_master, 0);
    // `[[history]]` after the broker's settings: the history of "orders" is kept in Redis.
    let settings = format!("{}\n[[history]]\nrooms = \"orders\"\n", setup.broker("sent"));
    let a = start_node(&settings).await;
    let b = start_node(&settings).await;
    assert!(connected(&a).await && connected(&b).await, "nodes reach the master through the sentinels");
    // Before the failover: five publishes to a room with history; Cy on node B saw them all.
    let mut orders = member(&a, "olga", "orders").await;
    let mut cy = member(&b, "cy", "orders").await;
    for i in 0..5 {
        send(&mut orders, &json!({"event": "publish", "channel": "orders", "data": i}).to_string()).await;
    }
    let mut last = Value::Null;
    for _ in 0..5 {
        last = next_message(&mut cy).await;
    }
    assert_eq!(last["offset"], 5, "{last}");
    drop(cy);
    let ada = member(&a, "ada", "news").await;
    let mut bob = member(&b, "bob", "news").await;
    let (mut ada_tx, mut ada_rx) = ada.split();
    // Ada's own copies are not the point; keep her queue drained.
    tokio::spawn(async move { while ada_rx.next().await.is_some() {} });
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let got = received.clone();
    tokio::spawn(async move {
        // Until the node shuts down at the end of the test.
        while let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = bob.next().await {
            let e: Value = serde_json::from_str(&t).unwrap();
            if e["event"] == "message" {
                got.lock().unwrap().push(e["data"].as_u64().unwrap());
            }
        }
    });
    // Ada publishes 0, 1, 2, ... every 20 ms until told to stop; `next` is the next number.
    let next = std::sync::Arc::new(AtomicU64::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let publisher = {
        let (next, stop) = (next.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !stop.load(Relaxed) {
                tick.tick().await;
                let i = next.load(Relaxed);
                let text = json!({"event": "publish", "channel": "news", "data": i}).to_string();
                ada_tx.send(tokio_tungstenite::tungstenite::Message::text(text)).await.unwrap();
                next.store(i + 1, Relaxed);
            }
        })
    };
    let count = async |n: u64| {
        while next.load(Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    count(20).await;
    let arrived = async || received.lock().unwrap().len() >= 20;
    assert!(eventually(Duration::from_secs(10), arrived).await, "before the failover everything crosses");

    // SIGKILL the master while Ada keeps publishing.
    let killed_at = std::time::Instant::now();
    let first_in_window = next.load(Relaxed);
    setup.master.take().map(Redis::kill);
    let sentinel = setup.ports[0];
    let (mut promoted_ms, mut down_seen) = (None, false);
    let reconnected_ms = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if promoted_ms.is_none() {
            let master = tokio::task::spawn_blocking(move || sentinel_master(sentinel)).await.unwrap();
            if master == replica {
                promoted_ms = Some(killed_at.elapsed().as_millis());
            }
        }
        let up =
            a.metric("wasmsock_broker_connected").await == 1.0 && b.metric("wasmsock_broker_connected").await == 1.0;
        down_seen |= !up;
        if down_seen && up && promoted_ms.is_some() {
            break killed_at.elapsed().as_millis();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(40), "the nodes did not follow the failover");
    };
    let last_in_window = next.load(Relaxed);
    // After both nodes are back on the new master, nothing is lost.
    count(last_in_window + 50).await;
    stop.store(true, Relaxed);
    publisher.await.unwrap();
    let end = next.load(Relaxed);
    let all_after = async || {
        let r = received.lock().unwrap();
        (last_in_window..end).all(|n| r.contains(&n))
    };
    assert!(eventually(Duration::from_secs(10), all_after).await, "delivery resumed on the promoted replica");
    let r = received.lock().unwrap().clone();
    assert!(r.windows(2).all(|w| w[0] < w[1]), "once each, in order: {r:?}");
    assert!((0..20).all(|n| r.contains(&n)), "before the kill everything crossed: {r:?}");
    let in_window = last_in_window - first_in_window;
    let lost = (first_in_window..last_in_window).filter(|n| !r.contains(n)).count();
    println!(
        "sentinel failover: master killed; promoted after {} ms, both nodes back on it after {reconnected_ms} ms; \
         {lost} of {in_window} publishes made meanwhile (every 20 ms) did not reach the other node",
        promoted_ms.unwrap_or(0)
    );
    // Node A waited for node B's subscription before sending what had queued up.
    assert_eq!(lost, 0, "publishes made during the failover were lost");

    // History resumes on the promoted replica: the same epoch, the offsets continue, and Cy
    // comes back to node B with what he missed.
    for i in 5..8 {
        send(&mut orders, &json!({"event": "publish", "channel": "orders", "data": i}).to_string()).await;
    }
    let mut cy = b.connect("/chat?name=cy").await;
    let since = json!({"offset": last["offset"], "epoch": last["epoch"]});
    send(&mut cy, &json!({"event": "subscribe", "channel": "orders", "since": since}).to_string()).await;
    let mut missed = Vec::new();
    let reply = loop {
        let e: Value = serde_json::from_str(&recv_text(&mut cy).await).unwrap();
        match e["event"].as_str() {
            Some("message") => missed.push(e["data"].clone()),
            Some("subscribed") => break e,
            _ => {}
        }
    };
    assert_eq!(reply["epoch"], last["epoch"], "the replica had the room's history: {reply}");
    assert_eq!(reply["recovered"], true, "{reply}");
    // Publishes made after the reply's read reach Cy live, after it.
    while missed.len() < 3 {
        missed.push(next_message(&mut cy).await["data"].clone());
    }
    assert_eq!(missed, [json!(5), json!(6), json!(7)]);
}

/// The next `message` event (presence events skipped).
async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let e: Value = serde_json::from_str(&recv_text(ws).await).unwrap();
        if e["event"] == "message" {
            return e;
        }
    }
}
