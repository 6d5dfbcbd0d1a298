#![allow(clippy::unwrap_used)]

use serde_json::json;
use wasmsock_sdk::testing::TestHost;
use wasmsock_sdk::{Connect, Identity, Request, http};

use super::*;

const URL: &str = "https://app.example.com/ws/connect";

fn request(cookie: &str) -> Request {
    Request {
        route: "/chat".into(),
        path: "/chat".into(),
        query: "token=t1&other=x".into(),
        headers: vec![("cookie".into(), cookie.into()), ("user-agent".into(), "test".into())],
        remote_addr: "192.0.2.1:5000".into(),
        ..Request::default()
    }
}

fn answer(status: u16, body: serde_json::Value) -> Result<http::Response, http::Error> {
    Ok(http::Response { status, headers: vec![], body: body.to_string().into_bytes() })
}

#[test]
fn the_backend_names_the_user() {
    let host = TestHost::new().config("connect_url", URL).http_result(
        "POST",
        URL,
        answer(200, json!({"user": "alice", "claims": {"role": "admin"}})),
    );
    let (_, decision) = host.connect(&Proxy, request("session=alice"));
    assert_eq!(decision, Connect::accept_as(Identity { id: "alice".into(), claims: r#"{"role":"admin"}"#.into() }));
    // It was sent the configured credentials only.
    let sent = host.http_requests();
    assert_eq!(sent.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["headers"], json!({"cookie": "session=alice"}));
    assert_eq!(body["query"], json!({"token": "t1"}));
    assert_eq!(body["remote_addr"], "192.0.2.1:5000");
    assert_eq!(sent[0].header_value("content-type"), Some("application/json"));
}

#[test]
fn the_backend_refuses_with_its_status_and_reason() {
    let host =
        TestHost::new().config("connect_url", URL).http_result("POST", URL, answer(403, json!({"reason": "banned"})));
    assert_eq!(host.connect(&Proxy, request("session=bob")).1, Connect::reject(403, "banned"));
}

#[test]
fn a_backend_that_is_down_or_failing_refuses_with_503() {
    let host = TestHost::new().config("connect_url", URL).http_fail("POST", URL, http::Error::Unreachable);
    assert_eq!(host.connect(&Proxy, request("x")).1, Connect::reject(503, "authentication backend unavailable"));
    let host = TestHost::new().config("connect_url", URL).http_result("POST", URL, answer(500, json!({})));
    assert_eq!(host.connect(&Proxy, request("x")).1, Connect::reject(503, "authentication backend unavailable"));
}

#[test]
fn forwarded_credentials_are_configurable() {
    let host = TestHost::new()
        .config("connect_url", URL)
        .config("forward_headers", "User-Agent")
        .config("forward_query", "")
        .http_result("POST", URL, answer(200, json!({})));
    assert_eq!(host.connect(&Proxy, request("session=alice")).1, Connect::accept());
    let body: serde_json::Value = serde_json::from_slice(&host.http_requests()[0].body).unwrap();
    assert_eq!(body["headers"], json!({"user-agent": "test"}));
    assert_eq!(body["query"], json!({}));
}

#[test]
fn without_a_url_every_handshake_is_refused() {
    let host = TestHost::new();
    assert_eq!(host.connect(&Proxy, request("x")).1, Connect::reject(500, "connect proxy not configured"));
}
