//! Rooms and host-held state: the rooms plugin behind auth, fan-out between clients, and
//! subscriptions, attachments and the key/value store surviving hot reloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wasmsock::plugin::LoadOutcome;

use crate::harness::*;

pub const CHAT: &str = r#"
[[routes]]
path = "/chat"
plugins = ["auth", "rooms"]
[[routes]]
path = "/probe"
plugins = ["probe"]
[plugins.auth.config]
hs256_secret = "rooms-test-secret"
allow_anonymous = "true"
"#;

pub async fn chat_server() -> TestServer {
    Setup::new(CHAT).plugin("auth", "auth").plugin("rooms", "rooms").plugin("probe", "probe").start().await
}

async fn request(ws: &mut Ws, v: Value) {
    send(ws, &v.to_string()).await;
}

async fn event(ws: &mut Ws) -> Value {
    serde_json::from_str(&recv_text(ws).await).expect("JSON event")
}

/// Connects `name` and subscribes it to `channel`; returns it after its `subscribed` reply.
async fn member(s: &TestServer, name: &str, channel: &str) -> Ws {
    let mut ws = s.connect(&format!("/chat?name={name}")).await;
    request(&mut ws, json!({"event": "subscribe", "channel": channel})).await;
    let reply = event(&mut ws).await;
    assert_eq!(reply["event"], "subscribed", "{reply}");
    ws
}

/// The next event that is not presence (join/leave).
async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let e = event(ws).await;
        if e["event"] != "join" && e["event"] != "leave" {
            return e;
        }
    }
}

async fn assert_silent(ws: &mut Ws) {
    if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), futures_util::StreamExt::next(ws)).await {
        panic!("expected nothing, got {m:?}");
    }
}

#[tokio::test]
async fn clients_in_a_room_see_each_other_and_other_rooms_see_nothing() {
    let s = chat_server().await;
    let mut ada = member(&s, "ada", "orders").await;
    let mut bob = member(&s, "bob", "orders").await;
    let mut cy = member(&s, "cy", "news").await;
    assert_eq!(event(&mut ada).await, json!({"event": "join", "channel": "orders", "user": "guest-bob"}));
    request(&mut bob, json!({"event": "publish", "channel": "orders", "data": {"item": 42}})).await;
    let expected = json!({"event": "message", "channel": "orders", "data": {"item": 42}, "from": "guest-bob"});
    assert_eq!(next_message(&mut ada).await, expected);
    assert_eq!(next_message(&mut bob).await, expected);
    request(&mut ada, json!({"event": "publish", "channel": "orders", "data": "hi bob"})).await;
    assert_eq!(next_message(&mut bob).await["from"], "guest-ada");
    assert_silent(&mut cy).await;
    // Errors keep the connection open.
    request(&mut cy, json!({"event": "publish", "channel": "orders", "data": 1})).await;
    assert_eq!(event(&mut cy).await["reason"], "not subscribed to orders");
    request(&mut cy, json!({"event": "ping"})).await;
    assert_eq!(event(&mut cy).await, json!({"event": "pong"}));
}

#[tokio::test]
async fn unsubscribing_and_closing_leave_the_room() {
    let s = chat_server().await;
    let mut ada = member(&s, "ada", "lobby").await;
    let mut bob = member(&s, "bob", "lobby").await;
    let cy = member(&s, "cy", "lobby").await;
    event(&mut ada).await; // join bob
    event(&mut ada).await; // join cy
    event(&mut bob).await; // join cy
    request(&mut bob, json!({"event": "unsubscribe", "channel": "lobby"})).await;
    assert_eq!(event(&mut bob).await["event"], "unsubscribed");
    assert_eq!(event(&mut ada).await, json!({"event": "leave", "channel": "lobby", "user": "guest-bob"}));
    drop(cy); // abrupt close
    assert_eq!(event(&mut ada).await, json!({"event": "leave", "channel": "lobby", "user": "guest-cy"}));
    request(&mut ada, json!({"event": "presence", "channel": "lobby"})).await;
    let p = event(&mut ada).await;
    assert_eq!((p["users"].clone(), p["count"].clone()), (json!(["guest-ada"]), json!(1)));
    request(&mut ada, json!({"event": "publish", "channel": "lobby", "data": "anyone?"})).await;
    assert_eq!(next_message(&mut ada).await["data"], "anyone?");
    assert_silent(&mut bob).await;
    // The server freed the emptied room.
    drop(ada);
    assert!(eventually(Duration::from_secs(5), async || s.metric("wasmsock_rooms").await == 0.0).await);
}

#[tokio::test]
async fn reloading_rooms_keeps_subscriptions_and_messages_flowing() {
    let mut s = chat_server().await;
    let mut ada = member(&s, "ada", "live").await;
    let mut bob = member(&s, "bob", "live").await;
    event(&mut ada).await; // join bob
    for round in 0..3 {
        let outcome = s.install_bytes("rooms", &rebuilt("rooms", &format!("v{round}"))).await;
        assert!(matches!(outcome, LoadOutcome::Loaded { replaced: true, .. }), "{outcome:?}");
        request(&mut ada, json!({"event": "publish", "channel": "live", "data": round})).await;
        assert_eq!(next_message(&mut bob).await["data"], round, "bob still subscribed after reload {round}");
        assert_eq!(next_message(&mut ada).await["data"], round);
    }
    request(&mut bob, json!({"event": "presence", "channel": "live"})).await;
    assert_eq!(event(&mut bob).await["count"], 2);
}

#[tokio::test]
async fn attachments_kv_and_rooms_survive_a_reload_of_the_plugin() {
    let mut s = chat_server().await;
    let mut a = s.connect("/probe").await;
    let mut b = s.connect("/probe").await;
    for (cmd, reply) in [("kv-set color teal", "kv-set ok"), ("attach note-for-a", "attached"), ("join team", "joined")]
    {
        send(&mut a, cmd).await;
        assert_eq!(recv_text(&mut a).await, reply);
    }
    send(&mut b, "join team").await;
    assert_eq!(recv_text(&mut b).await, "joined");
    send(&mut a, "version").await;
    assert_eq!(recv_text(&mut a).await, "probe v1");
    assert!(matches!(s.install("probe", "probe-v2").await, LoadOutcome::Loaded { replaced: true, .. }));
    // The new code (fresh instances, nothing left in wasm memory) sees the old state and the
    // old subscriptions.
    send(&mut a, "version").await;
    assert_eq!(recv_text(&mut a).await, "probe v2");
    send(&mut a, "kv-get color").await;
    assert_eq!(recv_text(&mut a).await, "teal");
    send(&mut a, "attachment").await;
    assert_eq!(recv_text(&mut a).await, "note-for-a");
    send(&mut b, "attachment").await;
    assert_eq!(recv_text(&mut b).await, "(none)", "attachments are per connection");
    send(&mut a, "publish team hello team").await;
    assert_eq!(recv_text(&mut a).await, "hello team");
    assert_eq!(recv_text(&mut a).await, "published to 2");
    assert_eq!(recv_text(&mut b).await, "hello team");
}

#[tokio::test]
async fn room_names_and_rooms_per_connection_are_bounded_by_config() {
    let s = Setup::new("[host]\nmax_rooms_per_connection = 2\nmax_room_name = 8\n[[routes]]\npath = \"/probe\"\nplugins = [\"probe\"]\n")
        .plugin("probe", "probe")
        .start()
        .await;
    let mut ws = s.connect("/probe").await;
    for (cmd, reply) in [
        ("join a", "joined"),
        ("join b", "joined"),
        ("join a", "joined"), // already a member: not a new room
        ("join c", "join failed"),
        ("leave b", "left"),
        ("join c", "joined"),
        ("join nine-char", "join failed"),
    ] {
        send(&mut ws, cmd).await;
        assert_eq!(recv_text(&mut ws).await, reply, "{cmd}");
    }
    // Refusals cost nothing else: the connection still publishes to its rooms.
    send(&mut ws, "publish c hello").await;
    assert_eq!(recv_text(&mut ws).await, "hello");
    assert_eq!(recv_text(&mut ws).await, "published to 1");
}

/// Amplification: a `hostile` plugin publishing in a loop to a big room, an echo route beside it.
const AMPLIFY: &str = r#"
[[routes]]
path = "/hostile"
plugins = ["hostile"]
[[routes]]
path = "/echo"
builtin = "echo"
[plugins.hostile]
max_sends_per_call = 1000
max_send_bytes_per_call = "512KiB"
max_failures = 1000
"#;

/// Connects `n` clients to `path` and has each send `join ROOM` (the `hostile` plugin's
/// command); returns them after every `joined`.
async fn joined(s: &TestServer, path: &str, rooms: impl Fn(usize) -> String, n: usize) -> Vec<Ws> {
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        let mut ws = s.connect(path).await;
        send(&mut ws, &format!("join {}", rooms(i))).await;
        members.push(ws);
    }
    for ws in &mut members {
        assert_eq!(recv_text(ws).await, "joined");
    }
    members
}

/// `n` members of `room` on the `hostile` route, on a runtime and thread of their own (so
/// their reading does not queue behind the server's tasks, as remote clients' would not);
/// counts the payload bytes and messages they receive until `stop` is set.
struct Audience {
    bytes: Arc<AtomicU64>,
    msgs: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Audience {
    async fn join(s: &TestServer, room: &str, n: usize) -> Audience {
        let (bytes, msgs, stop) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let (addr, config, url, room) = (s.addr, s.tls_client_config(), s.url("/hostile"), room.to_owned());
        let (b, m, st) = (bytes.clone(), msgs.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut readers = Vec::new();
                for _ in 0..n {
                    let req = url.as_str().into_client_request().unwrap();
                    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let connector = tokio_tungstenite::Connector::Rustls(config.clone());
                    let (mut ws, _) =
                        tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector)).await.unwrap();
                    send(&mut ws, &format!("join {room}")).await;
                    assert_eq!(recv_text(&mut ws).await, "joined");
                    let (b, m) = (b.clone(), m.clone());
                    readers.push(tokio::spawn(async move {
                        while let Some(Ok(msg)) = futures_util::StreamExt::next(&mut ws).await {
                            if msg.is_text() || msg.is_binary() {
                                b.fetch_add(msg.len() as u64, Ordering::Relaxed);
                                m.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }));
                }
                let _ = ready_tx.send(());
                while !st.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                readers.iter().for_each(|r| r.abort());
            });
        });
        ready.await.expect("the members joined");
        Audience { bytes, msgs, stop, thread: Some(thread) }
    }

    fn received(&self) -> (u64, u64) {
        (self.bytes.load(Ordering::Relaxed), self.msgs.load(Ordering::Relaxed))
    }
}

impl Drop for Audience {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Round trips of `n` echo messages, 2 ms apart.
async fn echo_rtts(ws: &mut Ws, n: usize) -> Vec<Duration> {
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n {
        let started = std::time::Instant::now();
        send(ws, &i.to_string()).await;
        assert_eq!(recv_text(ws).await, i.to_string());
        rtts.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    rtts
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_cannot_make_a_publish_loop_write_more_than_the_call_budget() {
    const MEMBERS: usize = 500;
    const SIZE: u64 = 1000;
    const ROUNDS: u64 = 4;
    let s = Setup::new(AMPLIFY).plugin("hostile", "hostile").start().await;
    let audience = Audience::join(&s, "lobby", MEMBERS).await;
    let mut attacker = s.connect("/hostile").await;
    let mut echo = s.connect("/echo").await;
    let out_before = s.metric("wasmsock_bytes_total{direction=\"out\"}").await;

    // Alternate idle and attacked phases, so both see the same machine (other tests, other
    // load). An attacked phase starts with one 23-byte message to the publishing plugin. The
    // machine is shared, so a burst of unrelated load can land in an attacked phase: the
    // latency comparison gets three tries (without the budget, every try fails by seconds).
    let mut rounds = 0u64;
    let (mut idle, mut attacked, mut worst) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _try in 0..3 {
        let (mut idle_rtts, mut attacked_rtts) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            idle_rtts.extend(echo_rtts(&mut echo, 200).await);
            send(&mut attacker, &format!("publish-loop lobby {SIZE}")).await;
            attacked_rtts.extend(echo_rtts(&mut echo, 200).await);
            rounds += 1;
            // Each call may write 1000 copies and 512 KiB: one publish to the 500 members
            // (500 KB), the second refused whole.
            send(&mut attacker, "last").await;
            assert_eq!(recv_text(&mut attacker).await, "published 1: limit reached");
            let all = rounds * MEMBERS as u64 * SIZE;
            eventually(Duration::from_secs(5), async || audience.received().0 >= all).await;
        }
        worst = attacked_rtts.iter().max().copied().unwrap_or_default();
        (idle, attacked) = (p99(idle_rtts), p99(attacked_rtts));
        eprintln!("echo p99 idle {idle:?}, attacked {attacked:?} (slowest {worst:?})");
        if attacked <= idle * 2 + STALL_MARGIN {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (budget_bytes, budget_msgs) = (rounds * (512 << 10), rounds * 1000);
    let (got_bytes, got_msgs) = audience.received();
    let written = (s.metric("wasmsock_bytes_total{direction=\"out\"}").await - out_before) as u64;
    eprintln!(
        "{rounds} attack messages: members got {got_msgs} messages, {got_bytes} bytes (server wrote {written} payload \
         bytes; budget {budget_msgs} messages, {budget_bytes} bytes); echo p99 idle {idle:?}, attacked {attacked:?} \
         (slowest {worst:?})"
    );
    assert!(got_bytes <= budget_bytes && got_msgs <= budget_msgs, "members got more than the budget");
    // The echo's own bytes and the replies to the attacker are the rest.
    assert!(written <= budget_bytes + (64 << 10), "the server wrote {written} bytes");
    assert_eq!(got_bytes, rounds * MEMBERS as u64 * SIZE, "every call's one publish reached every member");
    // The figure itself is the benchmark's; here only a stall (the loop holding the I/O thread for
    // the whole budget) must fail, not a busy machine's scheduling noise on sub-millisecond RTTs.
    assert!(attacked <= idle * 2 + STALL_MARGIN, "echo p99 {attacked:?} after an attack message, {idle:?} idle");
}

/// What scheduling on a loaded 2-core machine adds to a p99 of sub-millisecond round trips;
/// writing a whole call budget (64 MiB) inline takes far longer.
const STALL_MARGIN: Duration = Duration::from_millis(25);

#[tokio::test]
async fn a_publish_larger_than_the_members_message_limit_reaches_none_and_the_plugin_is_told() {
    let s = Setup::new(
        r#"
[[routes]]
path = "/hostile"
plugins = ["hostile"]
limits = { max_message_size = "1MiB" }
"#,
    )
    .plugin("hostile", "hostile")
    .start()
    .await;
    let mut members = joined(&s, "/hostile", |_| "big".into(), 3).await;
    send(&mut members[0], &format!("publish big {}", 8 << 20)).await;
    assert_eq!(recv_text(&mut members[0]).await, "publish error: too large");
    for ws in &mut members {
        assert_silent(ws).await;
    }
    send(&mut members[1], "publish big 1000").await;
    for ws in &mut members {
        assert_eq!(recv_text(ws).await.len(), 1000, "a publish within the limit reaches every member");
    }
    assert_eq!(recv_text(&mut members[1]).await, "published to 3");
}

/// Resident memory of process `pid`.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) << 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_do_not_read_hold_no_more_than_their_outbox_bound() {
    // The real binary, so its resident memory is the server's alone. Default limits: 1 MiB
    // messages, 4 MiB outboxes; "drop" keeps the full members connected.
    const MEMBERS: usize = 30;
    let p = crate::process::Proc::start(
        "[[routes]]\npath = \"/hostile\"\nplugins = [\"hostile\"]\nlimits = { slow_consumer = \"drop\" }\n",
        &["hostile"],
        "[plugins.hostile]\nmax_failures = 1000\ndeadline = \"200ms\"\n",
    );
    let pid = p.child.id();
    // One room each, so every member holds buffers of its own (shared ones would hide the bound).
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let mut ws = p.connect("/hostile").await;
        send(&mut ws, &format!("join m{i}")).await;
        assert_eq!(recv_text(&mut ws).await, "joined");
        members.push(ws); // never read again
    }
    let mut attacker = p.connect("/hostile").await;
    let before = rss_of(pid);
    let mut peak = before;
    for _ in 0..40 {
        send(&mut attacker, &format!("publish-each m {MEMBERS} {}", 1 << 20)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(rss_of(pid));
    }
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(rss_of(pid));
    }
    send(&mut attacker, "last").await;
    let report = recv_text(&mut attacker).await;
    let growth = peak.saturating_sub(before);
    // Each member: its 4 MiB outbox (frames the writer holds included) and the TLS send buffer
    // (< 0.5 MiB); 2 MiB of slack each for the allocator and the plugin instance's own memory.
    let bound = MEMBERS as u64 * (6 << 20);
    eprintln!(
        "{MEMBERS} members that do not read: server RSS {} MiB -> peak {} MiB (+{} MiB, bound {} MiB); last call: {report}",
        before >> 20,
        peak >> 20,
        growth >> 20,
        bound >> 20
    );
    assert!(report.ends_with("limit reached"), "{report}");
    assert!(growth <= bound, "the server grew by {} MiB for {MEMBERS} members that do not read", growth >> 20);
    drop(members);
}

/// Publishes from several members at once reach every member whole and, per publisher, in
/// order, while each member's own requests are answered in between: the frames a publish
/// writes for idle members (from the publisher's side, see `conn::link`) and those a member's
/// own task writes never overtake each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_reach_every_member_in_order_between_its_own_replies() {
    const PUBLISHERS: usize = 3;
    const LISTENERS: usize = 20;
    const EACH: usize = 150;
    const PINGS: usize = 40;
    let config = CHAT.replace(
        "plugins = [\"auth\", \"rooms\"]",
        "plugins = [\"auth\", \"rooms\"]\nlimits = { outbox_messages = 8192 }",
    );
    let s = Setup::new(&config).plugin("auth", "auth").plugin("rooms", "rooms").start().await;
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        publishers.push(member(&s, &format!("pub{p}"), "race").await);
    }
    let mut listeners = Vec::new();
    for l in 0..LISTENERS {
        listeners.push(member(&s, &format!("l{l}"), "race").await);
    }
    // Everyone reads until it has every publish (and, for listeners, every pong), checking
    // each publisher's sequence.
    let check = |mut ws: Ws, pings: usize| {
        tokio::spawn(async move {
            let (mut next, mut pongs) = ([0u64; PUBLISHERS], 0);
            let mut sent_pings = 0;
            while next.iter().sum::<u64>() < (PUBLISHERS * EACH) as u64 || pongs < pings {
                if sent_pings < pings {
                    request(&mut ws, json!({"event": "ping"})).await;
                    sent_pings += 1;
                }
                let e = next_message(&mut ws).await;
                if e["event"] == "pong" {
                    pongs += 1;
                    continue;
                }
                assert_eq!(e["event"], "message", "{e}");
                let (p, n) = (e["data"]["p"].as_u64().expect("p") as usize, e["data"]["n"].as_u64().expect("n"));
                assert_eq!(n, next[p], "publisher {p}'s messages out of order or missing");
                next[p] += 1;
            }
            ws
        })
    };
    let readers: Vec<_> = listeners.into_iter().map(|ws| check(ws, PINGS)).collect();
    let mut senders = Vec::new();
    for (p, mut ws) in publishers.into_iter().enumerate() {
        senders.push(tokio::spawn(async move {
            for n in 0..EACH {
                request(&mut ws, json!({"event": "publish", "channel": "race", "data": {"p": p, "n": n}})).await;
            }
            ws
        }));
    }
    let mut own = Vec::new();
    for sender in senders {
        own.push(check(sender.await.expect("publisher"), 0));
    }
    let mut all = Vec::new();
    for reader in readers.into_iter().chain(own) {
        all.push(
            tokio::time::timeout(Duration::from_secs(60), reader)
                .await
                .expect("all delivered in time")
                .expect("in order"),
        );
    }
    // Then one publish to the whole idle room reaches everyone, with nothing behind it to
    // carry it out.
    request(&mut all[0], json!({"event": "publish", "channel": "race", "data": "last"})).await;
    for ws in &mut all {
        assert_eq!(next_message(ws).await["data"], "last");
    }
    assert_eq!(s.metric("wasmsock_outbox_drops_total").await, 0.0);
}
