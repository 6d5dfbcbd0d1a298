//! Rooms and host-held state: the rooms plugin behind auth, fan-out between clients, and
//! subscriptions, attachments and the key/value store surviving hot reloads.

use std::time::Duration;

use serde_json::{Value, json};
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
