//! The JWT auth plugin at the handshake: every bad token is refused with 401 before the upgrade,
//! a good one is accepted and its `sub` becomes the connection's identity for later plugins.

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::*;

const SECRET: &str = "integration-secret";

fn config() -> String {
    format!(
        r#"
[[routes]]
path = "/secure"
plugins = ["auth", "probe"]
[plugins.auth.config]
hs256_secret = "{SECRET}"
issuer = "https://id.example"
"#
    )
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "grace", "iss": "https://id.example", "exp": unix_now() + 300, "channels": ["ops"]})
}

#[tokio::test]
async fn bad_tokens_get_401_and_a_good_token_names_the_connection() {
    let s = Setup::new(&config()).plugin("auth", "auth").plugin("probe", "probe").start().await;
    let mut expired = good_claims();
    expired["exp"] = json!(unix_now() - 3600);
    let mut foreign = good_claims();
    foreign["iss"] = json!("https://evil.example");
    let cases = [
        (String::new(), "missing token"),
        ("garbage".to_owned(), "malformed token"),
        (hs256_token(&good_claims(), "not the secret"), "bad signature"),
        (hs256_token(&expired, SECRET), "token expired"),
        (hs256_token(&foreign, SECRET), "wrong issuer"),
    ];
    for (token, reason) in cases {
        let path = if token.is_empty() { "/secure".to_owned() } else { format!("/secure?token={token}") };
        assert_eq!(s.refused(&path).await, (401, reason.to_owned()), "{reason}");
    }
    // Query parameter.
    let token = hs256_token(&good_claims(), SECRET);
    let mut ws = s.connect(&format!("/secure?token={token}")).await;
    send(&mut ws, "whoami").await;
    assert_eq!(recv_text(&mut ws).await, "grace", "the identity reaches the next plugin of the chain");
    // Authorization header.
    let mut req = s.url("/secure").into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let mut ws = s.connect_request(req).await.unwrap();
    send(&mut ws, "whoami").await;
    assert_eq!(recv_text(&mut ws).await, "grace");
    // Subprotocol carrier, as a browser would send it: the handshake answers `access_token`.
    let mut req = s.url("/secure").into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", format!("access_token, {token}").parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let connector = tokio_tungstenite::Connector::Rustls(s.tls_client_config());
    let (mut ws, resp) =
        tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector)).await.unwrap();
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "access_token");
    send(&mut ws, "whoami").await;
    assert_eq!(recv_text(&mut ws).await, "grace");
}
