//! Timers: host-held, one-shot, keyed per plugin. Real server, real TLS, the probe plugin's
//! timer commands (`timer KEY MS` for the connection, `timer-free KEY MS` for none, `cancel KEY`,
//! `timers N`), and the rooms plugin's summaries.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmsock::plugin::LoadOutcome;

use crate::harness::*;

const PROBE: &str = r#"
[[routes]]
path = "/probe"
plugins = ["probe"]
"#;

async fn probe_server(extra: &str) -> TestServer {
    Setup::new(&format!("{PROBE}{extra}")).plugin("probe", "probe").start().await
}

/// Sends `cmd` and returns the reply.
async fn ask(ws: &mut Ws, cmd: &str) -> String {
    send(ws, cmd).await;
    recv_text(ws).await
}

/// Nothing but heartbeats arrives on `ws` within `limit`.
async fn silent_for(ws: &mut Ws, limit: Duration) -> Result<(), String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Ok(()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(m) => return Err(format!("expected nothing, got {m:?}")),
        }
    }
}

#[tokio::test]
async fn a_timer_fires_once_with_its_key_and_connection_after_its_delay() {
    let s = probe_server("").await;
    let mut a = s.connect("/probe").await;
    let mut watcher = s.connect("/probe").await;
    assert_eq!(ask(&mut watcher, "join timers").await, "joined");
    let set = Instant::now();
    assert_eq!(ask(&mut a, "timer mine 300").await, "timer set");
    assert_eq!(ask(&mut a, "timer-free free 100").await, "timer set");
    // The timer without a connection: on-timer is told none (the probe publishes to `timers`).
    assert_eq!(recv_text(&mut watcher).await, "fired free probe v1");
    assert_eq!(recv_text(&mut a).await, "fired mine probe v1", "tied to a: a gets it");
    assert!(set.elapsed() >= Duration::from_millis(300), "not before its delay: {:?}", set.elapsed());
    silent_for(&mut a, Duration::from_millis(500)).await.unwrap();
    silent_for(&mut watcher, Duration::from_millis(1)).await.unwrap();
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_fired_total{plugin="probe"}"#).await, 2.0);
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_set_total{plugin="probe"}"#).await, 2.0);
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_active{plugin="probe"}"#).await, 0.0);
}

#[tokio::test]
async fn a_cancelled_timer_does_not_fire_and_setting_a_key_again_replaces_it() {
    let s = probe_server("").await;
    let mut a = s.connect("/probe").await;
    assert_eq!(ask(&mut a, "timer gone 200").await, "timer set");
    assert_eq!(ask(&mut a, "timer moved 100").await, "timer set");
    assert_eq!(ask(&mut a, "timer moved 600").await, "timer set");
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_active{plugin="probe"}"#).await, 2.0);
    assert_eq!(ask(&mut a, "cancel gone").await, "cancelled true");
    assert_eq!(ask(&mut a, "cancel gone").await, "cancelled false");
    silent_for(&mut a, Duration::from_millis(400)).await.unwrap();
    assert_eq!(recv_text(&mut a).await, "fired moved probe v1");
    silent_for(&mut a, Duration::from_millis(400)).await.unwrap();
}

#[tokio::test]
async fn a_connections_timers_go_with_it_and_never_fire_after_it_closed() {
    let s = probe_server("").await;
    let mut a = s.connect("/probe").await;
    let mut b = s.connect("/probe").await;
    for key in ["t1", "t2", "t3"] {
        assert_eq!(ask(&mut a, &format!("timer {key} 1500")).await, "timer set");
    }
    assert_eq!(ask(&mut b, "timer b 1500").await, "timer set");
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_active{plugin="probe"}"#).await, 4.0);
    a.close(None).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || s.metric(r#"wasmsock_plugin_timers_active{plugin="probe"}"#).await
            == 1.0)
        .await,
        "a's three timers are removed when it closes"
    );
    assert_eq!(recv_text(&mut b).await, "fired b probe v1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_fired_total{plugin="probe"}"#).await, 1.0, "only b's fired");
    assert_eq!(s.metric(r#"wasmsock_plugin_failures_total{plugin="probe",kind="trap"}"#).await, 0.0);
}

#[tokio::test]
async fn a_timer_survives_a_hot_reload_and_the_new_code_gets_the_call() {
    let mut s = probe_server("").await;
    let mut a = s.connect("/probe").await;
    let mut watcher = s.connect("/probe").await;
    assert_eq!(ask(&mut watcher, "join timers").await, "joined");
    assert_eq!(ask(&mut a, "timer tied 1500").await, "timer set");
    assert_eq!(ask(&mut a, "timer-free free 1500").await, "timer set");
    assert_eq!(ask(&mut a, "version").await, "probe v1");
    assert!(matches!(s.install("probe", "probe-v2").await, LoadOutcome::Loaded { replaced: true, .. }));
    assert_eq!(ask(&mut a, "version").await, "probe v2");
    assert_eq!(recv_text(&mut a).await, "fired tied probe v2");
    assert_eq!(recv_text(&mut watcher).await, "fired free probe v2");
    // Each fired once.
    silent_for(&mut a, Duration::from_millis(300)).await.unwrap();
    silent_for(&mut watcher, Duration::from_millis(1)).await.unwrap();
}

#[tokio::test]
async fn a_plugin_asking_for_a_million_timers_gets_errors_past_its_bound_and_the_server_is_fine() {
    // A high deadline: 100,000 host calls per message.
    let s = probe_server("[plugins.probe]\nmax_timers = 1000\ndeadline = \"10s\"\n").await;
    let mut a = s.connect("/probe").await;
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..10 {
        let reply = ask(&mut a, "timers 100000").await;
        let fields: Vec<&str> = reply.split(' ').collect();
        ok += fields[1].strip_prefix("ok=").unwrap().parse::<u64>().unwrap();
        refused += fields[2].strip_prefix("refused=").unwrap().parse::<u64>().unwrap();
        if refused > 0 {
            assert_eq!(fields[3..].join(" "), "error=limit reached", "{reply}");
        }
    }
    assert_eq!((ok, refused), (1000, 999_000));
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_active{plugin="probe"}"#).await, 1000.0);
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_refused_total{plugin="probe",kind="limit"}"#).await, 999_000.0);
    // Bad keys and delays are refused too.
    assert_eq!(ask(&mut a, "timer-free toolong 86400001").await, "timer refused: invalid argument");
    assert_eq!(ask(&mut a, &format!("timer-free {} 1", "k".repeat(257))).await, "timer refused: invalid argument");
    // Replacing an armed timer needs no room; a new one does: cancel one first.
    assert_eq!(ask(&mut a, "timer-free flood-0 100").await, "timer set");
    assert_eq!(ask(&mut a, "timer-free new 100").await, "timer refused: limit reached");
    assert_eq!(ask(&mut a, "cancel flood-1").await, "cancelled true");
    assert_eq!(ask(&mut a, "timer new 100").await, "timer set");
    assert_eq!(recv_text(&mut a).await, "fired new probe v1");
    // The server goes on: another connection echoes.
    let mut b = s.connect("/probe").await;
    assert_eq!(ask(&mut b, "hello").await, "hello");
}

#[tokio::test]
async fn a_trapping_on_timer_is_a_failure_under_the_plugins_policy() {
    let s = probe_server("[plugins.probe]\nmax_failures = 3\n").await;
    let mut a = s.connect("/probe").await;
    let mut b = s.connect("/probe").await;
    // Tied to a connection, with on_error = close (the default): the connection is closed as
    // for a failing message.
    assert_eq!(ask(&mut a, "timer trap-a 50").await, "timer set");
    let (code, _) = expect_close(&mut a).await;
    assert_eq!(code, 1011);
    assert_eq!(s.metric(r#"wasmsock_plugin_failures_total{plugin="probe",kind="trap"}"#).await, 1.0);
    // Timers of no connection fail without closing anything; enough of them in the window
    // quarantine the plugin, as failing calls do.
    for key in ["trap-1", "trap-2"] {
        assert_eq!(ask(&mut b, &format!("timer-free {key} 10")).await, "timer set");
    }
    assert!(
        eventually(Duration::from_secs(5), async || s
            .metric(r#"wasmsock_plugin_quarantines_total{plugin="probe"}"#)
            .await
            == 1.0)
        .await
    );
    assert_eq!(s.metric(r#"wasmsock_plugin_failures_total{plugin="probe",kind="trap"}"#).await, 3.0);
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_fired_total{plugin="probe"}"#).await, 3.0);
    // b stays open: its messages now meet the quarantine (policy close), not a timer's failure.
    assert!(s.plugin_listing("probe").await["quarantined_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn with_bypass_a_trapping_on_timer_leaves_its_connection_open() {
    let s = probe_server("[plugins.probe]\non_error = \"bypass\"\n").await;
    let mut a = s.connect("/probe").await;
    assert_eq!(ask(&mut a, "timer trap 20").await, "timer set");
    assert!(
        eventually(Duration::from_secs(5), async || s
            .metric(r#"wasmsock_plugin_failures_total{plugin="probe",kind="trap"}"#)
            .await
            == 1.0)
        .await
    );
    assert_eq!(ask(&mut a, "still here").await, "still here");
}

#[tokio::test]
async fn rooms_members_get_a_summary_every_interval() {
    let toml = r#"
[[routes]]
path = "/chat"
plugins = ["rooms"]
[plugins.rooms.config]
summary_secs = "1"
presence = "false"
"#;
    let s = Setup::new(toml).plugin("rooms", "rooms").start().await;
    let subscribe = json!({"event": "subscribe", "channel": "lobby"}).to_string();
    let mut ada = s.connect("/chat").await;
    send(&mut ada, &subscribe).await;
    assert_eq!(serde_json::from_str::<Value>(&recv_text(&mut ada).await).unwrap()["event"], "subscribed");
    let mut bob = s.connect("/chat").await;
    send(&mut bob, &subscribe).await;
    assert_eq!(serde_json::from_str::<Value>(&recv_text(&mut bob).await).unwrap()["event"], "subscribed");
    let started = Instant::now();
    for ws in [&mut ada, &mut bob] {
        let summary: Value = serde_json::from_str(&recv_text(ws).await).unwrap();
        assert_eq!(summary, json!({"event": "summary", "channel": "lobby", "members": 2}));
    }
    let second: Value = serde_json::from_str(&recv_text(&mut ada).await).unwrap();
    assert_eq!(second["event"], "summary");
    let gap = started.elapsed();
    assert!(gap >= Duration::from_millis(700) && gap < Duration::from_secs(3), "a second apart: {gap:?}");
    drop(bob);
    // Once bob is gone, the count says so.
    let mut last = Value::Null;
    for _ in 0..3 {
        last = serde_json::from_str(&recv_text(&mut ada).await).unwrap();
        if last["members"] == 1 {
            break;
        }
    }
    assert_eq!(last, json!({"event": "summary", "channel": "lobby", "members": 1}));
}

#[tokio::test]
async fn shutdown_drops_pending_timers_and_ends_promptly() {
    let s = probe_server("").await;
    let mut a = s.connect("/probe").await;
    assert_eq!(ask(&mut a, "timers 100").await, "timers ok=100 refused=0 error=");
    let started = Instant::now();
    s.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_plugin_without_on_timer_loads_as_before_and_may_not_set_timers() {
    let toml =
        "[[routes]]\npath = \"/old\"\nplugins = [\"old\"]\n[[routes]]\npath = \"/probe\"\nplugins = [\"probe\"]\n";
    let s = Setup::new(toml).plugin("old", "no-timer").plugin("probe", "probe").start().await;
    assert_eq!(s.plugin_listing("old").await["loaded"], true);
    let mut old = s.connect("/old").await;
    assert_eq!(ask(&mut old, "hello").await, "hello");
    let refused = ask(&mut old, "timer t").await;
    assert!(refused.starts_with("Err(") && refused.contains("not-permitted"), "{refused}");
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_refused_total{plugin="old",kind="no_export"}"#).await, 1.0);
    assert_eq!(s.metric(r#"wasmsock_plugin_timers_active{plugin="old"}"#).await, 0.0);
    // Next to it, a plugin that exports on-timer gets its calls.
    let mut probe = s.connect("/probe").await;
    assert_eq!(ask(&mut probe, "timer t 10").await, "timer set");
    assert_eq!(recv_text(&mut probe).await, "fired t probe v1");
}
