use serde_json::{Value, json};
use wasmsock_sdk::testing::TestHost;
use wasmsock_sdk::{HttpRequest, Identity, Message};

use super::*;

fn host() -> TestHost {
    TestHost::new().config("api_key", "secret")
}

fn call(host: &TestHost, method: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(k) = key {
        headers.push(("x-api-key".into(), k.into()));
    }
    let req = HttpRequest {
        method: "POST".into(),
        route: "/api".into(),
        path: format!("/api/{method}"),
        headers,
        body: body.as_bytes().to_vec(),
        remote_addr: "127.0.0.1:1".into(),
        ..HttpRequest::default()
    };
    let r = host.request(&Api, req);
    (r.status, String::from_utf8(r.body).unwrap())
}

fn ok(host: &TestHost, method: &str, body: Value) -> Value {
    let (status, text) = call(host, method, Some("secret"), &body.to_string());
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_key_is_required_and_compared_whole() {
    let host = host();
    for key in [None, Some(""), Some("secre"), Some("secret!"), Some("Secret")] {
        assert_eq!(call(&host, "publish", key, r#"{"channel":"a","data":1}"#).0, 401, "{key:?}");
    }
    assert!(same(b"abc", b"abc") && !same(b"abd", b"abc") && !same(b"", b"abc") && !same(b"abcd", b"abc"));
}

#[test]
fn publish_reaches_the_channel_as_a_rooms_message_event() {
    let host = host();
    let conn = host.open("/chat");
    conn.join("orders").unwrap();
    assert_eq!(ok(&host, "publish", json!({"channel": "orders", "data": {"id": 7}})), json!({"result": {}}));
    let sent = host.sent(conn);
    assert_eq!(sent.len(), 1);
    let event: Value = sent[0].parse_json().unwrap();
    assert_eq!(event, json!({"event": "message", "channel": "orders", "data": {"id": 7}}));
    // Nobody there: still a success, as Centrifugo answers.
    assert_eq!(ok(&host, "publish", json!({"channel": "empty", "data": 1})), json!({"result": {}}));
}

#[test]
fn broadcast_answers_per_channel() {
    let host = host();
    let (a, b) = (host.open("/chat"), host.open("/chat"));
    a.join("x").unwrap();
    b.join("y").unwrap();
    let reply = ok(&host, "broadcast", json!({"channels": ["x", "y", ""], "data": "hi"}));
    let responses = reply["result"]["responses"].as_array().unwrap();
    assert_eq!(responses[0], json!({"result": {}}));
    assert_eq!(responses[2]["error"]["code"], 107);
    assert_eq!(host.sent(a).len(), 1);
    assert_eq!(host.sent(b), vec![Message::json(&json!({"event":"message","channel":"y","data":"hi"})).unwrap()]);
}

#[test]
fn disconnect_presence_and_stats() {
    let host = host();
    let a = host.open_as("/chat", Identity::new("ada"));
    let a2 = host.open_as("/chat", Identity::new("ada"));
    let b = host.open_as("/chat", Identity::new("bob"));
    for c in [a, a2, b] {
        c.join("room").unwrap();
    }
    let p = ok(&host, "presence", json!({"channel": "room"}));
    assert_eq!(p["result"]["presence"][a.id().to_string()], json!({"client": a.id().to_string(), "user": "ada"}));
    assert_eq!(p["result"]["presence"].as_object().unwrap().len(), 3);
    let s = ok(&host, "presence_stats", json!({"channel": "room"}));
    assert_eq!(s, json!({"result": {"num_clients": 3, "num_users": 2}}));
    // Another node has bob and cy: counted, and cy (there only) listed once by identity.
    host.elsewhere("room", "bob", 1);
    host.elsewhere("room", "cy", 2);
    let s = ok(&host, "presence_stats", json!({"channel": "room"}));
    assert_eq!(s, json!({"result": {"num_clients": 6, "num_users": 3}}));
    let p = ok(&host, "presence", json!({"channel": "room"}));
    assert_eq!(p["result"]["presence"]["remote:cy"], json!({"client": "remote:cy", "user": "cy"}));
    assert_eq!(p["result"]["presence"].as_object().unwrap().len(), 4);
    // Redis down: the cluster's numbers are not available.
    host.presence_unknown(true);
    assert_eq!(ok(&host, "presence_stats", json!({"channel": "room"}))["error"]["code"], 108);
    assert_eq!(ok(&host, "presence", json!({"channel": "room"}))["error"]["code"], 108);
    host.presence_unknown(false);
    assert_eq!(
        ok(&host, "disconnect", json!({"user": "ada", "disconnect": {"code": 4000, "reason": "bye"}})),
        json!({"result": {}})
    );
    assert_eq!(host.close_requested(a), Some((4000, "bye".into())));
    assert_eq!(host.close_requested(a2), Some((4000, "bye".into())));
    assert_eq!(host.close_requested(b), None);
}

#[test]
fn bad_requests() {
    let host = host();
    assert_eq!(call(&host, "publish", Some("secret"), "{not json").0, 400);
    assert_eq!(call(&host, "publish", Some("secret"), r#"{"data":1}"#).0, 400, "no channel");
    assert_eq!(call(&host, "publish", Some("secret"), "[1]").0, 400);
    assert_eq!(call(&host, "history", Some("secret"), "{}").0, 404);
    let no_key = TestHost::new();
    assert_eq!(call(&no_key, "publish", Some(""), "{}").0, 503, "refused without a configured key");
}
