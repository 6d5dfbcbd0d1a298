//! Room history and recovery (`[[history]]`, the `history` interface) through the rooms
//! plugin, with real TLS clients: what a client missed while away is replayed in order when it
//! subscribes again with its last position, with no gap and no duplicate at the seam even while
//! others publish; bad positions subscribe without recovery; a restart changes the epoch; the
//! bounds evict and the metrics count it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const CONFIG: &str = r#"
[[routes]]
path = "/chat"
plugins = ["auth", "rooms"]
[plugins.auth.config]
hs256_secret = "history-test-secret"
allow_anonymous = "true"

[[history]]
rooms = "orders*"
size = 2000
[[history]]
rooms = "small*"
size = 3
[[history]]
rooms = "short*"
ttl = "300ms"
[[history]]
rooms = "tiny*"
max_bytes = "1KiB"
"#;

async fn server(extra: &str) -> TestServer {
    Setup::new(&format!("{CONFIG}{extra}")).plugin("auth", "auth").plugin("rooms", "rooms").start().await
}

pub(crate) async fn request(ws: &mut Ws, v: Value) {
    send(ws, &v.to_string()).await;
}

pub(crate) async fn event(ws: &mut Ws) -> Value {
    serde_json::from_str(&recv_text(ws).await).expect("JSON event")
}

/// Subscribes with an optional `since`; returns the events up to and including `subscribed`.
pub(crate) async fn subscribe(ws: &mut Ws, channel: &str, since: Option<Value>) -> Vec<Value> {
    let mut req = json!({"event": "subscribe", "channel": channel});
    if let Some(since) = since {
        req["since"] = since;
    }
    request(ws, req).await;
    let mut events = Vec::new();
    loop {
        let e = event(ws).await;
        let done = e["event"] == "subscribed";
        if e["event"] != "join" && e["event"] != "leave" {
            events.push(e);
        }
        if done {
            return events;
        }
    }
}

/// The next `message` event (presence skipped).
pub(crate) async fn message(ws: &mut Ws) -> Value {
    loop {
        let e = event(ws).await;
        if e["event"] == "message" {
            return e;
        }
    }
}

pub(crate) async fn publish(ws: &mut Ws, channel: &str, data: Value) {
    request(ws, json!({"event": "publish", "channel": channel, "data": data, "echo": false})).await;
}

/// Publishes with an `id`, so the plugin confirms; returns the receipt (once it is back, every
/// earlier publish of this connection has been made).
pub(crate) async fn publish_confirmed(ws: &mut Ws, channel: &str, data: Value) -> Value {
    request(ws, json!({"event": "publish", "channel": channel, "data": data, "echo": false, "id": 1})).await;
    loop {
        let e = event(ws).await;
        if e["event"] == "published" || e["event"] == "error" {
            return e;
        }
    }
}

pub(crate) fn since(m: &Value) -> Value {
    json!({"offset": m["offset"], "epoch": m["epoch"]})
}

#[tokio::test]
async fn a_client_that_comes_back_gets_what_it_missed_in_order_then_live_messages() {
    let s = server("").await;
    let mut publisher = s.connect("/chat?name=pub").await;
    subscribe(&mut publisher, "orders", None).await;
    let mut ada = s.connect("/chat?name=ada").await;
    let reply = subscribe(&mut ada, "orders", None).await.pop().unwrap();
    assert_eq!((reply["recovered"].clone(), reply["offset"].clone()), (json!(false), json!(0)), "{reply}");
    publish(&mut publisher, "orders", json!(0)).await;
    let seen = message(&mut ada).await;
    assert_eq!(seen["offset"], 1, "{seen}");
    assert_eq!(seen["epoch"], reply["epoch"]);
    drop(ada);

    const MISSED: u64 = 25;
    for n in 1..=MISSED {
        publish(&mut publisher, "orders", json!(n)).await;
    }
    // The publisher's own receipt says where the room stands (its id asks for one).
    let receipt = publish_confirmed(&mut publisher, "orders", json!("last")).await;
    assert_eq!(receipt["offset"], MISSED + 2);

    let mut ada = s.connect("/chat?name=ada").await;
    let events = subscribe(&mut ada, "orders", Some(since(&seen))).await;
    let (reply, missed) = events.split_last().unwrap();
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["offset"], MISSED + 2);
    let offsets: Vec<u64> = missed.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (2..=MISSED + 2).collect::<Vec<_>>(), "the missed messages, in order, before the reply");
    assert_eq!(missed[0]["data"], 1);
    assert_eq!(missed[MISSED as usize]["data"], "last");
    publish(&mut publisher, "orders", json!("live")).await;
    let live = message(&mut ada).await;
    assert_eq!((live["offset"].clone(), live["data"].clone()), (json!(MISSED + 3), json!("live")));
}

#[tokio::test]
async fn the_seam_under_concurrent_publishes_has_no_gap_and_no_duplicate() {
    let s = server("").await;
    const PER_PUBLISHER: u64 = 300;
    let mut publishers = Vec::new();
    for p in 0..2 {
        let mut ws = s.connect(&format!("/chat?name=pub{p}")).await;
        subscribe(&mut ws, "orders-seam", None).await;
        publishers.push(ws);
    }
    let mut ada = s.connect("/chat?name=ada").await;
    subscribe(&mut ada, "orders-seam", None).await;

    let hammering: Vec<_> = publishers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for n in 0..PER_PUBLISHER - 1 {
                    publish(&mut ws, "orders-seam", json!(n)).await;
                    // Paced a little, so the publishing spans Ada's comings and goings.
                    if n % 4 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                // Confirmed: every publish of this connection was made.
                publish_confirmed(&mut ws, "orders-seam", json!("last")).await;
                ws
            })
        })
        .collect();

    // Ada reads a few, leaves while the publishers go on, and comes back with her position,
    // several times; every offset must arrive exactly once, in order.
    let mut offsets = Vec::new();
    let mut last = message(&mut ada).await;
    offsets.push(last["offset"].as_u64().unwrap());
    for round in 0..4 {
        for _ in 0..5 {
            // The publishers may be done already: then the seam is at the room's end.
            let Ok(m) = tokio::time::timeout(Duration::from_millis(500), message(&mut ada)).await else { break };
            offsets.push(m["offset"].as_u64().unwrap());
            last = m;
        }
        drop(ada);
        tokio::time::sleep(Duration::from_millis(5 * round)).await;
        ada = s.connect("/chat?name=ada").await;
        let events = subscribe(&mut ada, "orders-seam", Some(since(&last))).await;
        let (reply, missed) = events.split_last().unwrap();
        assert_eq!(reply["recovered"], true, "{reply}");
        for m in missed {
            offsets.push(m["offset"].as_u64().unwrap());
            last = m.clone();
        }
    }
    let mut publishers = Vec::new();
    for h in hammering {
        publishers.push(h.await.unwrap());
    }
    let total = 2 * PER_PUBLISHER;
    while *offsets.last().unwrap() < total {
        match tokio::time::timeout(Duration::from_secs(5), message(&mut ada)).await {
            Ok(m) => offsets.push(m["offset"].as_u64().unwrap()),
            Err(_) => panic!(
                "offset {total} never came: {} offsets, last {:?}",
                offsets.len(),
                &offsets[offsets.len().saturating_sub(20)..]
            ),
        }
    }
    let first = offsets[0];
    assert_eq!(offsets, (first..=total).collect::<Vec<_>>(), "no gap, no duplicate, in order");
}

#[tokio::test]
async fn bad_positions_subscribe_without_recovery_and_live_messages_follow() {
    let s = server("").await;
    let mut publisher = s.connect("/chat?name=pub").await;
    subscribe(&mut publisher, "orders-bad", None).await;
    let mut ada = s.connect("/chat?name=ada").await;
    subscribe(&mut ada, "orders-bad", None).await;
    publish(&mut publisher, "orders-bad", json!(1)).await;
    let epoch = message(&mut ada).await["epoch"].clone();
    drop(ada);
    for (i, bad) in [
        json!({"offset": 99, "epoch": epoch}),
        json!({"offset": 1, "epoch": "another-epoch"}),
        json!({"offset": "1", "epoch": epoch}),
        json!({"offset": -3, "epoch": epoch}),
        json!({"offset": 18446744073709551615u64, "epoch": epoch}),
        json!([1, 2]),
        json!("0"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut ws = s.connect("/chat?name=bob").await;
        let events = subscribe(&mut ws, "orders-bad", Some(bad.clone())).await;
        assert_eq!(events.len(), 1, "{bad}: nothing replayed: {events:?}");
        let top = json!(1 + i);
        assert_eq!((events[0]["recovered"].clone(), events[0]["offset"].clone()), (json!(false), top), "{bad}");
        publish(&mut publisher, "orders-bad", json!("live")).await;
        assert_eq!(message(&mut ws).await["data"], "live", "{bad}: subscribed all the same");
    }
    // A channel without history: since is answered recovered:false, messages have no offset.
    let mut ws = s.connect("/chat?name=cy").await;
    let reply = subscribe(&mut ws, "lobby", Some(json!({"offset": 1, "epoch": epoch}))).await.pop().unwrap();
    assert_eq!(reply["recovered"], false);
    request(&mut ws, json!({"event": "publish", "channel": "lobby", "data": 1})).await;
    assert!(message(&mut ws).await.get("offset").is_none());
}

#[tokio::test]
async fn a_restart_changes_the_epoch_and_the_old_position_is_not_recovered() {
    let s = server("").await;
    let mut ada = s.connect("/chat?name=ada").await;
    subscribe(&mut ada, "orders", None).await;
    request(&mut ada, json!({"event": "publish", "channel": "orders", "data": 1})).await;
    let seen = message(&mut ada).await;
    drop(ada);
    s.shutdown().await.unwrap();

    let s = server("").await;
    let mut ada = s.connect("/chat?name=ada").await;
    let events = subscribe(&mut ada, "orders", Some(since(&seen))).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["recovered"], false);
    assert_ne!(events[0]["epoch"], seen["epoch"], "a new epoch");
    assert_eq!(events[0]["offset"], 0);
}

#[tokio::test]
async fn size_ttl_and_bytes_bound_each_room_and_the_metrics_count_the_evictions() {
    let s = server("").await;
    let mut publisher = s.connect("/chat?name=pub").await;
    for channel in ["small", "short", "tiny"] {
        subscribe(&mut publisher, channel, None).await;
    }
    // size = 3: of five, the last three are kept; from offset 1, recovery is impossible.
    for n in 1..=5 {
        publish(&mut publisher, "small", json!(n)).await;
    }
    let mut ws = s.connect("/chat?name=ada").await;
    let reply = subscribe(&mut ws, "small", None).await.pop().unwrap();
    let epoch = reply["epoch"].clone();
    let events = subscribe(&mut ws, "small", Some(json!({"offset": 1, "epoch": epoch}))).await;
    assert_eq!(events.last().unwrap()["recovered"], false, "offsets 1 and 2 were evicted");
    let events = subscribe(&mut ws, "small", Some(json!({"offset": 2, "epoch": epoch}))).await;
    assert_eq!(events.iter().filter(|e| e["event"] == "message").count(), 3, "{events:?}");
    assert_eq!(events.last().unwrap()["recovered"], true);
    assert_eq!(s.metric("wasmsock_history_evictions_total{reason=\"size\"}").await, 2.0);

    // ttl = 300ms: an entry older than that is gone.
    publish(&mut publisher, "short", json!(1)).await;
    let reply = subscribe(&mut ws, "short", None).await.pop().unwrap();
    let start = json!({"offset": 0, "epoch": reply["epoch"]});
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let events = subscribe(&mut ws, "short", Some(start)).await;
    assert_eq!(events.last().unwrap()["recovered"], false, "{events:?}");
    assert_eq!(s.metric("wasmsock_history_evictions_total{reason=\"ttl\"}").await, 1.0);

    // max_bytes = 1KiB: a few 300-byte messages (plus overhead) evict the oldest.
    for _ in 0..4 {
        publish(&mut publisher, "tiny", json!("x".repeat(300))).await;
    }
    // A message larger than the room's bound is refused, and the connection stays.
    request(&mut publisher, json!({"event": "publish", "channel": "tiny", "data": "x".repeat(2000)})).await;
    let refusal = loop {
        let e = event(&mut publisher).await;
        if e["event"] == "error" {
            break e;
        }
    };
    assert_eq!(refusal["reason"], "too large");
    assert!(
        eventually(Duration::from_secs(2), async || {
            s.metric("wasmsock_history_evictions_total{reason=\"bytes\"}").await >= 2.0
        })
        .await
    );
    let bytes = s.metric("wasmsock_history_bytes").await;
    let entries = s.metric("wasmsock_history_entries").await;
    assert!(entries >= 3.0 && bytes > 0.0 && bytes <= 64.0 * 1024.0 * 1024.0, "{entries} entries, {bytes} bytes");
}

#[tokio::test]
async fn the_total_bound_evicts_and_leaves_new_rooms_without_history() {
    // Room for a few logs and entries only.
    let s = server("[host]\nmax_history_memory = \"3KiB\"\n").await;
    let mut publisher = s.connect("/chat?name=pub").await;
    subscribe(&mut publisher, "orders-a", None).await;
    for n in 0..19 {
        publish(&mut publisher, "orders-a", json!({"n": n, "pad": "y".repeat(100)})).await;
    }
    publish_confirmed(&mut publisher, "orders-a", json!(19)).await;
    let mut ws = s.connect("/chat?name=ada").await;
    let reply = subscribe(&mut ws, "orders-a", None).await.pop().unwrap();
    assert_eq!(reply["offset"], 20);
    assert!(s.metric("wasmsock_history_evictions_total{reason=\"total\"}").await >= 1.0);
    assert!(s.metric("wasmsock_history_bytes").await <= 3.0 * 1024.0);
    assert_eq!(s.metric("wasmsock_history_bytes_limit").await, 3.0 * 1024.0);
    // Many new rooms: once the total is full, they publish and subscribe without history.
    let mut without = 0;
    for r in 0..30 {
        let channel = format!("orders-r{r}");
        let reply = subscribe(&mut ws, &channel, None).await.pop().unwrap();
        if reply.get("offset").is_none() {
            without += 1;
            request(&mut ws, json!({"event": "publish", "channel": channel, "data": 1})).await;
            assert_eq!(message(&mut ws).await["data"], 1, "a room without history still delivers");
        }
    }
    assert!(without > 0, "the total bound left some rooms without history");
    assert!(s.metric("wasmsock_history_bytes").await <= 3.0 * 1024.0);
}
