//! Contract versions: plugins built against an older contract this host still serves keep
//! loading and working, next to plugins built for the current one.

use wasmsock::plugin::LoadOutcome;

use crate::harness::*;

const CONFIG: &str = r#"
[[routes]]
path = "/old"
plugins = ["legacy"]
[[routes]]
path = "/new"
plugins = ["probe"]
"#;

#[tokio::test]
async fn a_plugin_built_for_contract_0_1_works_next_to_one_built_for_0_2() {
    let mut s = Setup::new(CONFIG).plugin("legacy", "legacy-v0-1").plugin("probe", "probe").start().await;
    assert_eq!(s.plugin_listing("legacy").await["contract"], "0.1.0");
    assert_eq!(s.plugin_listing("probe").await["contract"], "0.2.0");

    let mut old = s.connect("/old?as=ada").await;
    let mut new = s.connect("/new?as=bob").await;
    send(&mut old, "hello").await;
    assert_eq!(recv_text(&mut old).await, "hello");
    send(&mut old, "whoami").await;
    assert_eq!(recv_text(&mut old).await, "ada");
    send(&mut new, "whoami").await;
    assert_eq!(recv_text(&mut new).await, "bob");
    // Host-held state works for both, each in its own plugin's namespace.
    send(&mut old, "kv-set k from-old").await;
    assert_eq!(recv_text(&mut old).await, "kv-set ok");
    send(&mut new, "kv-set k from-new").await;
    assert_eq!(recv_text(&mut new).await, "kv-set ok");
    send(&mut old, "kv-get k").await;
    assert_eq!(recv_text(&mut old).await, "from-old");
    // Rooms too.
    let mut other = s.connect("/old").await;
    send(&mut other, "join lobby").await;
    assert_eq!(recv_text(&mut other).await, "joined");
    send(&mut old, "publish lobby hi").await;
    assert_eq!(recv_text(&mut old).await, "published to 1");
    assert_eq!(recv_text(&mut other).await, "hi");

    // Reloading the old plugin with itself, and a new-contract plugin in its place, both work.
    assert!(matches!(s.install("legacy", "probe").await, LoadOutcome::Loaded { .. }));
    send(&mut old, "version").await;
    assert_eq!(recv_text(&mut old).await, "probe v1");
    assert!(matches!(s.install("legacy", "legacy-v0-1").await, LoadOutcome::Loaded { .. }));
    send(&mut old, "id").await;
    assert!(recv_text(&mut old).await.parse::<u64>().is_ok());
}
