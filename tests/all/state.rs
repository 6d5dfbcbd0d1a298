//! State without lost updates: the atomic key/value operations under many concurrent clients
//! (calls of one plugin run on several threads at once). Across nodes: `broker.rs`.

use crate::harness::*;

const PROBE: &str = r#"
[[routes]]
path = "/probe"
plugins = ["probe"]
"#;

/// `voters` clients at once, each casting one vote with `command` (`kv-incr KEY` or
/// `kv-cas-incr KEY`) on one of `servers` in turn; returns the replies.
pub async fn vote(servers: &[&TestServer], voters: usize, command: &str) -> Vec<String> {
    let mut clients = Vec::new();
    for i in 0..voters {
        clients.push(servers[i % servers.len()].connect("/probe").await);
    }
    // Every client connected first, then all vote at once.
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            let command = command.to_owned();
            tokio::spawn(async move {
                send(&mut ws, &command).await;
                recv_text(&mut ws).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.expect("voter"));
    }
    replies
}

/// The counts in replies like `kv-incr 17`, sorted.
pub fn counts(replies: &[String]) -> Vec<u64> {
    let mut n: Vec<u64> = replies
        .iter()
        .map(|r| r.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("reply {r:?}")))
        .collect();
    n.sort_unstable();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_voters_lose_no_vote() {
    let s = Setup::new(PROBE).plugin("probe", "probe").start().await;
    // Increment: every voter sees a distinct count, and the last is 200.
    let replies = vote(&[&s], 200, "kv-incr votes:yes").await;
    assert_eq!(counts(&replies), (1..=200).collect::<Vec<_>>(), "each vote counted once");
    // Compare-and-set read-modify-write, retried until it wins: the same.
    let replies = vote(&[&s], 200, "kv-cas-incr votes:cas").await;
    assert_eq!(counts(&replies), (1..=200).collect::<Vec<_>>());
    let mut ws = s.connect("/probe").await;
    send(&mut ws, "kv-get votes:yes").await;
    assert_eq!(recv_text(&mut ws).await, "200");
    // Listing by prefix, in order.
    send(&mut ws, "kv-list votes:").await;
    assert_eq!(recv_text(&mut ws).await, "kv-list votes:cas,votes:yes");
}
