//! Operators see everything: Prometheus metrics that move with traffic, health and readiness,
//! and the plugin listing, on the admin listener.

use std::time::Duration;

use wasmsock::plugin::LoadOutcome;

use crate::harness::*;

const CONFIG: &str = r#"
[[routes]]
path = "/echo"
plugins = ["echo"]
[[routes]]
path = "/probe"
plugins = ["probe"]
[[routes]]
path = "/later"
plugins = ["later"]
"#;

#[tokio::test]
async fn metrics_move_as_connections_and_messages_flow() {
    let mut s = Setup::new(CONFIG).plugin("echo", "echo").plugin("probe", "probe").start().await;
    let m = |name: &str| name.to_owned();
    let before_in = s.metric("wasmsock_messages_total{direction=\"in\"}").await;
    let before_calls = s.metric("wasmsock_plugin_call_seconds_count{plugin=\"echo\",export=\"on-message\"}").await;

    let mut a = s.connect("/echo").await;
    let mut b = s.connect("/probe?monitor=1").await;
    assert_eq!(s.metric(&m("wasmsock_connections")).await, 2.0);
    for i in 0..10 {
        send(&mut a, &format!("message {i}")).await;
        recv_text(&mut a).await;
    }
    assert_eq!(s.metric("wasmsock_messages_total{direction=\"in\"}").await - before_in, 10.0);
    assert!(s.metric("wasmsock_messages_total{direction=\"out\"}").await >= 10.0);
    assert!(s.metric("wasmsock_bytes_total{direction=\"in\"}").await >= 90.0);
    assert_eq!(
        s.metric("wasmsock_plugin_call_seconds_count{plugin=\"echo\",export=\"on-message\"}").await - before_calls,
        10.0
    );
    assert!(s.metric("wasmsock_connections_accepted_total").await >= 2.0);
    // Rooms: the monitor joined one.
    assert_eq!(s.metric("wasmsock_rooms").await, 1.0);
    assert_eq!(s.metric("wasmsock_room_members").await, 1.0);

    // Rejections by reason, close codes.
    s.refused("/nope").await;
    s.refused("/later").await;
    assert!(s.metric("wasmsock_handshake_rejects_total{reason=\"not_found\"}").await >= 1.0);
    assert!(s.metric("wasmsock_handshake_rejects_total{reason=\"plugin_unavailable\"}").await >= 1.0);
    send(&mut b, "close 4001 done").await;
    expect_close(&mut b).await;
    // Application close codes (3000-4999, chosen by clients and plugins) share one label, so a
    // client cannot grow the number of series.
    assert!(
        eventually(Duration::from_secs(5), async || s.metric("wasmsock_closes_total{code=\"other\"}").await >= 1.0)
            .await
    );
    assert_eq!(s.metric("wasmsock_closes_total{code=\"4001\"}").await, 0.0);
    assert!(eventually(Duration::from_secs(5), async || s.metric("wasmsock_connections").await == 1.0).await);
    assert_eq!(s.metric("wasmsock_rooms").await, 0.0, "an emptied room is freed");

    // Reloads, ok and failed.
    assert!(matches!(s.install("later", "echo").await, LoadOutcome::Loaded { .. }));
    assert!(matches!(s.install_bytes("later", b"junk").await, LoadOutcome::Failed { .. }));
    assert_eq!(s.metric("wasmsock_plugin_reloads_total{plugin=\"later\",result=\"ok\"}").await, 1.0);
    assert_eq!(s.metric("wasmsock_plugin_reloads_total{plugin=\"later\",result=\"failed\"}").await, 1.0);
    drop(a);
}

#[tokio::test]
async fn health_readiness_and_the_plugin_listing() {
    let mut s = Setup::new(CONFIG).plugin("echo", "echo").plugin("probe", "probe").start().await;
    assert_eq!(s.admin_get("/healthz").await, (200, "ok\n".into()));
    // `/later` has no plugin yet: not ready, and it says why.
    let (status, body) = s.admin_get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("/later needs later"), "{body}");
    s.install("later", "echo").await;
    assert_eq!(s.admin_get("/readyz").await.0, 200);

    let mut ws = s.connect("/echo").await;
    send(&mut ws, "x").await;
    recv_text(&mut ws).await;
    let echo = s.plugin_listing("echo").await;
    assert_eq!(echo["loaded"], true);
    assert_eq!(echo["hash"].as_str().unwrap().len(), 16);
    assert_eq!(echo["contract"], "0.2.0");
    assert_eq!(echo["routes"], serde_json::json!(["/echo"]));
    assert!(echo["calls"].as_u64().unwrap() >= 1);
    assert_eq!(echo["errors"], 0);
    assert!(echo["loaded_at_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(s.admin_get("/nothing").await.0, 404);
    // No broker configured: no broker series (a `broker_connected 0` would read as a broker down).
    let (_, metrics) = s.admin_get("/metrics").await;
    assert!(!metrics.contains("wasmsock_broker_"), "{metrics}");
}
