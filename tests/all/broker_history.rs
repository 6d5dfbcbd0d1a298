//! Room history kept in Redis (`[[history]]` with `[broker]`), through a real `redis-server`
//! and real nodes (node A in-process, nodes B and C real `wasmsock` processes): every node has
//! the same history in the same order, a client recovers on a node other than the one it left,
//! with no gap and no duplicate at the seam while others publish; a Redis restarted empty
//! changes the epoch; with Redis down a node goes on with a history of its own and recovery
//! says `recovered: false` where it cannot be sure.

use std::time::Duration;

use serde_json::{Value, json};

use crate::broker::{Redis, connected, skip};
use crate::harness::*;
use crate::history::{message, publish, publish_confirmed, since, subscribe};
use crate::process::Proc;

const ROUTES: &str = r#"
[[routes]]
path = "/chat"
plugins = ["auth", "rooms"]
[plugins.auth.config]
hs256_secret = "broker-history-secret"
allow_anonymous = "true"

[[history]]
rooms = "orders*"
size = 1000
ttl = "10m"
"#;

fn broker(redis: u16) -> String {
    format!("[broker]\nurl = \"redis://127.0.0.1:{redis}\"\nprefix = \"bh{redis}\"\n")
}

async fn node_a(redis: u16) -> TestServer {
    let s = Setup::new(&format!("{ROUTES}\n{}", broker(redis)))
        .plugin("auth", "auth")
        .plugin("rooms", "rooms")
        .start()
        .await;
    assert!(connected(&s).await, "node A did not connect to Redis");
    s
}

fn process_node(redis: u16) -> Proc {
    Proc::start(ROUTES, &["auth", "rooms"], &broker(redis))
}

/// The next `n` messages on `ws`: (offset, data).
async fn messages(ws: &mut Ws, n: usize) -> Vec<(u64, Value)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(10), message(ws)).await.expect("a message within 10 s");
        got.push((m["offset"].as_u64().expect("an offset"), m["data"].clone()));
    }
    got
}

fn offsets(got: &[(u64, Value)]) -> Vec<u64> {
    got.iter().map(|(o, _)| *o).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_has_the_same_history_and_a_client_recovers_on_another_node_without_gap_or_duplicate() {
    let Some(redis) = Redis::start(None) else { return skip() };
    let a = node_a(redis.port).await;
    let b = process_node(redis.port);

    let mut ada = a.connect("/chat?name=ada").await;
    let reply = subscribe(&mut ada, "orders", None).await.pop().unwrap();
    assert_eq!((reply["recovered"].clone(), reply["offset"].clone()), (json!(false), json!(0)), "{reply}");
    let epoch = reply["epoch"].clone();
    let mut bea = b.connect("/chat?name=bea").await;
    let reply = subscribe(&mut bea, "orders", None).await.pop().unwrap();
    assert_eq!(reply["epoch"], epoch, "one epoch for the room on every node");
    let (mut pub_a, mut pub_b) = (a.connect("/chat?name=pa").await, b.connect("/chat?name=pb").await);
    subscribe(&mut pub_a, "orders", None).await;
    subscribe(&mut pub_b, "orders", None).await;

    // Two nodes publish at once: every member, on either node, gets offsets 1..=100 in order,
    // each offset the same message.
    let burst = |ws: &'static str| (0..50).map(move |i| json!(format!("{ws}{i}")));
    tokio::join!(
        async {
            for d in burst("a") {
                publish(&mut pub_a, "orders", d).await;
            }
        },
        async {
            for d in burst("b") {
                publish(&mut pub_b, "orders", d).await;
            }
        }
    );
    let (on_a, on_b) = tokio::join!(messages(&mut ada, 100), messages(&mut bea, 100));
    assert_eq!(offsets(&on_a), (1..=100).collect::<Vec<_>>(), "node A's member");
    assert_eq!(on_a, on_b, "the same history, in the same order, on both nodes");

    // Ada leaves node A having seen offset 100; 20 more are published from node B.
    let seen = json!({"offset": 100, "epoch": epoch});
    drop(ada);
    for i in 0..20 {
        publish(&mut pub_b, "orders", json!(format!("missed{i}"))).await;
    }
    let receipt = publish_confirmed(&mut pub_b, "orders", json!("last")).await;
    assert_eq!(receipt["offset"], 121, "{receipt}");

    // She comes back on node C, which started after all of it (its mirror is empty): the
    // recovery comes from Redis, then live messages follow.
    let c = process_node(redis.port);
    let mut ada = c.connect("/chat?name=ada").await;
    let events = subscribe(&mut ada, "orders", Some(seen.clone())).await;
    let (reply, missed) = events.split_last().unwrap();
    assert_eq!((reply["recovered"].clone(), reply["offset"].clone()), (json!(true), json!(121)), "{reply}");
    let got: Vec<u64> = missed.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(got, (101..=121).collect::<Vec<_>>(), "what she missed, in order, before the reply");
    assert_eq!(missed[0]["data"], "missed0");
    publish(&mut pub_a, "orders", json!("live")).await;
    assert_eq!(messages(&mut ada, 1).await, [(122, json!("live"))]);

    // The seam under load: node A publishes 200 while clients on node C come back from
    // positions its mirror has (122) and does not have (100, before it started): each gets
    // every offset after its position exactly once, in order.
    let publishing = tokio::spawn(async move {
        for i in 0..200 {
            publish(&mut pub_a, "orders", json!(i)).await;
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        publish(&mut pub_a, "orders", json!("end")).await;
        pub_a
    });
    let mut checks = Vec::new();
    for (i, from) in [122u64, 100, 110, 122, 100].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let mut ws = c.connect(&format!("/chat?name=c{i}")).await;
        let since = json!({"offset": from, "epoch": epoch});
        checks.push(tokio::spawn(async move {
            let events = subscribe(&mut ws, "orders", Some(since)).await;
            let (reply, replayed) = events.split_last().unwrap();
            assert_eq!(reply["recovered"], true, "from {from}: {reply}");
            let mut got: Vec<u64> = replayed.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
            // Came back after the end was published: it is among the replayed.
            while replayed.last().is_none_or(|m| m["data"] != "end") {
                let m = tokio::time::timeout(Duration::from_secs(10), message(&mut ws)).await.expect("live");
                got.push(m["offset"].as_u64().unwrap());
                if m["data"] == "end" {
                    break;
                }
            }
            eprintln!("client from {from}: {} replayed, {} live", replayed.len(), got.len() - replayed.len());
            let want: Vec<u64> = (from + 1..=*got.last().unwrap()).collect();
            assert_eq!(got, want, "client from {from}: a gap or a duplicate at the seam");
        }));
    }
    let mut pub_a = publishing.await.unwrap();
    for c in checks {
        c.await.unwrap();
    }

    // Positions that cannot be continued: subscribed, not recovered, live messages follow.
    for bad in [json!({"offset": 9999, "epoch": epoch}), json!({"offset": 5, "epoch": "another"})] {
        let mut ws = c.connect("/chat?name=bad").await;
        let reply = subscribe(&mut ws, "orders", Some(bad.clone())).await.pop().unwrap();
        assert_eq!(reply["recovered"], false, "{bad}: {reply}");
        publish(&mut pub_a, "orders", json!("after-bad")).await;
        assert_eq!(messages(&mut ws, 1).await[0].1, "after-bad");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_or_change_the_epoch_and_an_outage_leaves_each_node_its_own_history() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = Redis::start_persistent(None, dir.path()) else { return skip() };
    let a = node_a(redis.port).await;
    let mut publisher = a.connect("/chat?name=pub").await;
    subscribe(&mut publisher, "orders", None).await;
    let mut ada = a.connect("/chat?name=ada").await;
    subscribe(&mut ada, "orders", None).await;
    for i in 0..3 {
        publish(&mut publisher, "orders", json!(i)).await;
    }
    let seen = since(&messages_full(&mut ada, 3).await[2]);
    let redis_epoch = seen["epoch"].clone();
    drop(ada);

    // Redis restarted with its data: same epoch, the history continues.
    let port = redis.kill();
    let redis = Redis::start_persistent(Some(port), dir.path()).unwrap();
    assert!(connected(&a).await, "node A did not reconnect");
    let receipt = publish_confirmed(&mut publisher, "orders", json!("after-restart")).await;
    assert_eq!((receipt["epoch"].clone(), receipt["offset"].clone()), (redis_epoch.clone(), json!(4)), "{receipt}");
    let mut ada = a.connect("/chat?name=ada").await;
    let events = subscribe(&mut ada, "orders", Some(seen.clone())).await;
    let (reply, missed) = events.split_last().unwrap();
    assert_eq!(reply["recovered"], true, "a restart that kept the data keeps the history: {reply}");
    assert_eq!(missed.iter().map(|m| m["data"].clone()).collect::<Vec<_>>(), [json!("after-restart")]);
    let seen = since(&missed[0]);

    // Redis down: the node publishes with a history of its own (a new epoch), live delivery
    // goes on, and a client coming back to this node recovers from it.
    redis.kill();
    let down = eventually(Duration::from_secs(10), async || a.metric("wasmsock_broker_connected").await == 0.0).await;
    assert!(down, "node A did not notice Redis was gone");
    let receipt = publish_confirmed(&mut publisher, "orders", json!("alone")).await;
    assert_eq!(a.metric("wasmsock_history_local_publishes_total").await, 1.0);
    let local_epoch = receipt["epoch"].clone();
    assert_ne!(local_epoch, redis_epoch, "{receipt}");
    let live = message_full(&mut ada).await;
    assert_eq!((live["data"].clone(), live["epoch"].clone()), (json!("alone"), local_epoch.clone()));
    drop(ada);
    publish(&mut publisher, "orders", json!("while-away")).await;
    publish_confirmed(&mut publisher, "orders", json!("while-away-2")).await;
    let mut ada = a.connect("/chat?name=ada").await;
    let events = subscribe(&mut ada, "orders", Some(since(&live))).await;
    let (reply, missed) = events.split_last().unwrap();
    assert_eq!(reply["recovered"], true, "this node's own history: {reply}");
    let data: Vec<&Value> = missed.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, [&json!("while-away"), &json!("while-away-2")]);
    // A position in Redis's epoch cannot be vouched for while Redis is away.
    let mut bob = a.connect("/chat?name=bob").await;
    let reply = subscribe(&mut bob, "orders", Some(seen.clone())).await.pop().unwrap();
    assert_eq!(reply["recovered"], false, "{reply}");

    // Redis back with its data: Redis's history lacks what this node published alone, so the
    // room's epoch ends (a position in it would claim nothing was missed), and publishes take
    // Redis's offsets again.
    let redis = Redis::start_persistent(Some(port), dir.path()).unwrap();
    assert!(connected(&a).await, "node A did not reconnect");
    let mut cy = a.connect("/chat?name=cy").await;
    let reply = subscribe(&mut cy, "orders", Some(seen)).await.pop().unwrap();
    assert_eq!(reply["recovered"], false, "the local publishes are not in Redis: {reply}");
    let receipt = publish_confirmed(&mut publisher, "orders", json!("redis-again")).await;
    let new_epoch = receipt["epoch"].clone();
    assert!(new_epoch != local_epoch && new_epoch != redis_epoch, "{receipt}");
    assert_eq!(receipt["offset"], 1);
    let live = message_full(&mut ada).await;
    assert_eq!((live["data"].clone(), live["epoch"].clone()), (json!("redis-again"), new_epoch.clone()));

    // Redis restarted empty (its data gone): the epoch changes again.
    let port = redis.kill();
    let empty = tempfile::tempdir().unwrap();
    let _redis = Redis::start_persistent(Some(port), empty.path()).unwrap();
    assert!(connected(&a).await, "node A did not reconnect");
    let receipt = publish_confirmed(&mut publisher, "orders", json!("empty")).await;
    assert_ne!(receipt["epoch"], new_epoch, "a Redis restarted empty must change the epoch: {receipt}");
    let mut dee = a.connect("/chat?name=dee").await;
    let reply = subscribe(&mut dee, "orders", Some(since(&live))).await.pop().unwrap();
    assert_eq!(reply["recovered"], false, "{reply}");
}

async fn message_full(ws: &mut Ws) -> Value {
    tokio::time::timeout(Duration::from_secs(10), message(ws)).await.expect("a message within 10 s")
}

async fn messages_full(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        got.push(message_full(ws).await);
    }
    got
}
