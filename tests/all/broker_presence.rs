//! Room presence across nodes through a real `redis-server`: node A in-process, node B a real
//! `wasmsock` process (so that it can be killed with SIGKILL), the `rooms` plugin on both. A
//! user is announced once per room however many tabs they have on however many nodes; member
//! lists and counts cover every live node, come back after Redis restarts empty, drop a killed
//! node's members within `node_ttl`, and say so when Redis is down.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::broker::{Redis, connected, skip};
use crate::harness::*;
use crate::process::Proc;
use crate::rooms::CHAT;

async fn event(ws: &mut Ws) -> Value {
    serde_json::from_str(&recv_text(ws).await).unwrap()
}

/// Subscribes `ws` to `lobby` and returns the `subscribed` reply.
async fn subscribe(ws: &mut Ws) -> Value {
    send(ws, &json!({"event": "subscribe", "channel": "lobby"}).to_string()).await;
    loop {
        let e = event(ws).await;
        if e["event"] == "subscribed" {
            return e;
        }
    }
}

/// The presence events `watcher` gets until its own marker comes back: everything announced
/// before the marker (announcements and the marker are published on the watcher's node, or
/// reach it in order from one other node, so a pending announcement comes first).
async fn announced(watcher: &mut Ws, marker: &str) -> Vec<Value> {
    send(watcher, &json!({"event": "publish", "channel": "lobby", "data": marker}).to_string()).await;
    let mut got = Vec::new();
    loop {
        let e = event(watcher).await;
        if e["event"] == "message" && e["data"] == marker {
            return got;
        }
        if e["event"] == "join" || e["event"] == "leave" {
            got.push(json!([e["event"], e["user"]]));
        }
    }
}

/// `ws`'s `presence` reply for `lobby`.
async fn presence(ws: &mut Ws) -> Value {
    send(ws, &json!({"event": "presence", "channel": "lobby"}).to_string()).await;
    loop {
        let e = event(ws).await;
        if e["event"] == "presence" {
            return e;
        }
    }
}

fn users_count(p: &Value) -> (Value, Value) {
    (p["users"].clone(), p["count"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_presence_spans_nodes_announces_each_user_once_and_survives_faults() {
    let Some(redis) = Redis::start(None) else { return skip() };
    let broker =
        format!("[broker]\nurl = \"redis://127.0.0.1:{0}\"\nprefix = \"rp{0}\"\nnode_ttl = \"1s\"\n", redis.port);
    let a = Setup::new(&format!("{CHAT}\n{broker}"))
        .plugin("auth", "auth")
        .plugin("rooms", "rooms")
        .plugin("probe", "probe")
        .start()
        .await;
    assert!(connected(&a).await, "node A did not connect to Redis");
    let b = Proc::start(CHAT, &["auth", "rooms", "probe"], &broker);

    let mut ada = a.connect("/chat?name=ada").await;
    subscribe(&mut ada).await;
    // Bob's first tab, on node B: announced to Ada on node A.
    let mut bob_b = b.connect("/chat?name=bob").await;
    subscribe(&mut bob_b).await;
    let got = tokio::time::timeout(Duration::from_secs(10), event(&mut ada)).await.expect("bob's join");
    assert_eq!(got, json!({"event": "join", "channel": "lobby", "user": "guest-bob"}));
    // His second tab, on node A: not a second join; the reply lists every node's members.
    let mut bob_a = a.connect("/chat?name=bob").await;
    let reply = subscribe(&mut bob_a).await;
    let members = (reply["members"].clone(), reply["count"].clone());
    assert_eq!(members, (json!(["guest-ada", "guest-bob"]), json!(3)), "{reply}");
    assert_eq!(announced(&mut ada, "m1").await, Vec::<Value>::new(), "bob's second tab announced a join");

    // Cy opens two tabs at once, one on each node: exactly one join, whichever node wins.
    let (mut cy_a, mut cy_b) = (a.connect("/chat?name=cy").await, b.connect("/chat?name=cy").await);
    let sub = json!({"event": "subscribe", "channel": "lobby"}).to_string();
    tokio::join!(send(&mut cy_a, &sub), send(&mut cy_b, &sub));
    let (ra, rb) = tokio::join!(subscribe_reply(&mut cy_a), subscribe_reply(&mut cy_b));
    assert!(ra["event"] == "subscribed" && rb["event"] == "subscribed");
    // A join announced from node B reaches Ada through Redis: wait for the counts to settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joins = announced(&mut ada, "m2").await;
    assert_eq!(joins, [json!(["join", "guest-cy"])], "cy's two simultaneous tabs");

    // Bob closes his tab on node A: he is still on node B, nothing is announced.
    // (His tab's `on-close` decides and announces in one call: once the count shows it gone,
    // an announcement would have been published before the marker.)
    drop(bob_a.close(None).await);
    let everyone = json!(["guest-ada", "guest-bob", "guest-cy"]);
    let settled = eventually(Duration::from_secs(10), async || {
        users_count(&presence(&mut ada).await) == (everyone.clone(), json!(4))
    })
    .await;
    assert!(settled, "bob's closed tab still counted: {}", presence(&mut ada).await);
    assert_eq!(announced(&mut ada, "m3").await, Vec::<Value>::new(), "bob left one of two tabs");

    // Redis restarted empty: both nodes write their rooms again.
    let port = redis.kill();
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis = Redis::start(Some(port)).unwrap();
    assert!(connected(&a).await, "node A did not reconnect");
    let back = eventually(Duration::from_secs(15), async || {
        users_count(&presence(&mut ada).await) == (everyone.clone(), json!(4))
    })
    .await;
    assert!(back, "node B's members are back after the restart: {}", presence(&mut ada).await);
    eprintln!("room presence complete again {:?} after Redis was killed (restarted empty)", restarted.elapsed());

    // Node B killed with SIGKILL: its members (bob, and cy's tab there) drop out within node_ttl.
    let killed = Instant::now();
    drop(b);
    let gone = eventually(Duration::from_secs(10), async || {
        users_count(&presence(&mut ada).await) == (json!(["guest-ada", "guest-cy"]), json!(2))
    })
    .await;
    assert!(gone, "node B's members still listed: {}", presence(&mut ada).await);
    let took = killed.elapsed();
    eprintln!("a killed node's room members dropped out after {took:?} (node_ttl 1s)");
    assert!(took < Duration::from_secs(4), "node B's members still counted {took:?} after it was killed");

    // Redis down: replies say they are this node's only, and connections go on unaffected.
    redis.kill();
    let flagged = eventually(Duration::from_secs(10), async || presence(&mut ada).await["cluster"] == false).await;
    assert!(flagged, "with Redis down the member list must say it is this node's");
    let started = Instant::now();
    let mut dee = a.connect("/chat?name=dee").await;
    let reply = subscribe(&mut dee).await;
    let took = started.elapsed();
    assert_eq!((reply["cluster"].clone(), reply["count"].clone()), (json!(false), json!(3)));
    let got = tokio::time::timeout(Duration::from_secs(5), event(&mut ada)).await.expect("dee's join");
    assert_eq!(got, json!({"event": "join", "channel": "lobby", "user": "guest-dee"}), "announced from this node");
    eprintln!("with Redis down, a subscribe was answered in {took:?}");
    assert!(took < Duration::from_secs(3), "a subscribe with Redis down took {took:?}");
}

/// The next `subscribed` (or `error`) reply on `ws`.
async fn subscribe_reply(ws: &mut Ws) -> Value {
    loop {
        let e = event(ws).await;
        if e["event"] == "subscribed" || e["event"] == "error" {
            return e;
        }
    }
}
