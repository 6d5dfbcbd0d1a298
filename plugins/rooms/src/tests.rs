#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use wasmsock_sdk::testing::TestHost;
use wasmsock_sdk::{Conn, Flow, Identity, Message};

use super::Rooms;

fn send(host: &TestHost, conn: Conn, request: Value) -> Flow {
    host.message(&Rooms, conn, Message::Text(request.to_string()))
}

/// Everything `conn` received, parsed.
fn got(host: &TestHost, conn: Conn) -> Vec<Value> {
    host.sent(conn).iter().map(|m| m.parse_json().unwrap()).collect()
}

fn user(host: &TestHost, name: &str) -> Conn {
    host.open_as("/chat", Identity::new(name))
}

fn subscribe(host: &TestHost, conn: Conn, channel: &str) -> Value {
    send(host, conn, json!({"event": "subscribe", "channel": channel}));
    got(host, conn).pop().unwrap()
}

#[test]
fn members_see_each_others_messages_and_not_other_channels() {
    let host = TestHost::new();
    let (ada, bob, cy) = (user(&host, "ada"), user(&host, "bob"), user(&host, "cy"));
    subscribe(&host, ada, "orders");
    subscribe(&host, bob, "orders");
    subscribe(&host, cy, "news");
    got(&host, ada);
    assert_eq!(send(&host, bob, json!({"event": "publish", "channel": "orders", "data": {"n": 1}})), Flow::Done);
    let expected = json!({"event": "message", "channel": "orders", "data": {"n": 1}, "from": "bob"});
    assert_eq!(got(&host, ada), vec![expected.clone()]);
    assert_eq!(got(&host, bob), vec![expected], "the sender sees its own message by default");
    assert!(got(&host, cy).is_empty());
    // echo:false leaves the sender out.
    send(&host, bob, json!({"event": "publish", "channel": "orders", "data": 2, "echo": false}));
    assert_eq!(got(&host, ada).len(), 1);
    assert!(got(&host, bob).is_empty());
}

#[test]
fn subscribe_lists_members_and_announces_the_newcomer_once() {
    let host = TestHost::new();
    let (ada, bob) = (user(&host, "ada"), user(&host, "bob"));
    subscribe(&host, ada, "lobby");
    let reply = subscribe(&host, bob, "lobby");
    assert_eq!(reply["event"], "subscribed");
    assert_eq!(reply["count"], 2);
    let mut members: Vec<String> = serde_json::from_value(reply["members"].clone()).unwrap();
    members.sort();
    assert_eq!(members, ["ada", "bob"]);
    assert_eq!(got(&host, ada), vec![json!({"event": "join", "channel": "lobby", "user": "bob"})]);
    // Subscribing again is not an error and announces nothing.
    assert_eq!(subscribe(&host, bob, "lobby")["event"], "subscribed");
    assert!(got(&host, ada).is_empty());
}

#[test]
fn unsubscribe_and_close_announce_leave_and_drop_membership() {
    let host = TestHost::new();
    let (ada, bob) = (user(&host, "ada"), user(&host, "bob"));
    subscribe(&host, ada, "lobby");
    subscribe(&host, bob, "lobby");
    got(&host, ada);
    send(&host, bob, json!({"event": "unsubscribe", "channel": "lobby", "id": 7}));
    assert_eq!(got(&host, bob), vec![json!({"event": "unsubscribed", "channel": "lobby", "id": 7})]);
    assert_eq!(got(&host, ada), vec![json!({"event": "leave", "channel": "lobby", "user": "bob"})]);
    send(&host, bob, json!({"event": "unsubscribe", "channel": "lobby"}));
    assert_eq!(got(&host, bob)[0]["reason"], "not subscribed to lobby");
    // A closing member is announced, then gone.
    subscribe(&host, bob, "lobby");
    got(&host, ada);
    host.close(&Rooms, bob, 1000, "bye");
    assert_eq!(got(&host, ada), vec![json!({"event": "leave", "channel": "lobby", "user": "bob"})]);
    assert_eq!(host.members("lobby"), vec![ada]);
}

#[test]
fn presence_ping_and_receipts() {
    let host = TestHost::new();
    let ada = user(&host, "ada");
    subscribe(&host, ada, "lobby");
    send(&host, ada, json!({"event": "presence", "channel": "lobby", "id": "p1"}));
    assert_eq!(
        got(&host, ada),
        vec![json!({"event": "presence", "channel": "lobby", "users": ["ada"], "count": 1, "id": "p1"})]
    );
    send(&host, ada, json!({"event": "ping"}));
    assert_eq!(got(&host, ada), vec![json!({"event": "pong"})]);
    send(&host, ada, json!({"event": "publish", "channel": "lobby", "data": "x", "id": 9}));
    let out = got(&host, ada);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], json!({"event": "published", "channel": "lobby", "delivered": 1, "id": 9}));
}

#[test]
fn anonymous_connections_are_named_after_their_id() {
    let host = TestHost::new();
    let anon = host.open("/chat");
    subscribe(&host, anon, "lobby");
    send(&host, anon, json!({"event": "publish", "channel": "lobby", "data": 1}));
    assert_eq!(got(&host, anon)[0]["from"], format!("conn-{}", anon.id()));
}

#[test]
fn every_bad_request_is_answered_with_an_error_and_the_connection_stays_open() {
    let host = TestHost::new();
    let ada = user(&host, "ada");
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{not json".into()), "invalid JSON"),
        (Message::Text("[1,2]".into()), "must be a JSON object"),
        (Message::Text(r#"{"event":"dance"}"#.into()), "bad request"),
        (Message::Text(r#"{"event":"subscribe"}"#.into()), "bad request"),
        (Message::Text(r#"{"event":"subscribe","channel":"no spaces"}"#.into()), "invalid channel"),
        (Message::Text(format!(r#"{{"event":"subscribe","channel":"{}"}}"#, "x".repeat(65))), "invalid channel"),
        (Message::Text(r#"{"event":"publish","channel":"lobby","data":1}"#.into()), "not subscribed to lobby"),
        (Message::Binary(vec![1, 2, 3]), "binary messages are not supported"),
    ];
    for (msg, reason) in cases {
        assert_eq!(host.message(&Rooms, ada, msg), Flow::Done);
        let reply = got(&host, ada).pop().unwrap();
        assert_eq!(reply["event"], "error");
        assert!(reply["reason"].as_str().unwrap().contains(reason), "{reply} should say {reason}");
    }
    assert!(host.is_open(ada) && host.close_requested(ada).is_none());
    // Errors echo the request id.
    send(&host, ada, json!({"event": "unsubscribe", "channel": "nope", "id": "x1"}));
    let reply = got(&host, ada).pop().unwrap();
    assert_eq!((reply["request"].as_str(), reply["id"].as_str()), (Some("unsubscribe"), Some("x1")));
}

#[test]
fn host_limits_are_reported_not_fatal() {
    let limits = wasmsock_sdk::testing::Limits { max_rooms_per_conn: 2, ..Default::default() };
    let host = TestHost::new().limits(limits);
    let ada = user(&host, "ada");
    subscribe(&host, ada, "a");
    subscribe(&host, ada, "b");
    let reply = subscribe(&host, ada, "c");
    assert_eq!(reply["event"], "error");
    assert_eq!(reply["reason"], "limit reached");
}

#[test]
fn channel_permissions_come_from_the_identity_claims() {
    let host = TestHost::new();
    let claims = json!({"channels": ["orders", "public-*"], "publish": ["public-*"]});
    let limited = host.open_as("/chat", Identity::with_claims("ops", &claims).unwrap());
    assert_eq!(subscribe(&host, limited, "orders")["event"], "subscribed");
    assert_eq!(subscribe(&host, limited, "public-news")["event"], "subscribed");
    let denied = subscribe(&host, limited, "secret");
    assert_eq!(denied["reason"], "permission denied: may not subscribe to secret");
    send(&host, limited, json!({"event": "publish", "channel": "orders", "data": 1}));
    assert_eq!(got(&host, limited)[0]["reason"], "permission denied: may not publish to orders");
    send(&host, limited, json!({"event": "publish", "channel": "public-news", "data": 1}));
    assert_eq!(got(&host, limited)[0]["event"], "message");
    // A wildcard grants everything; claims without the keys grant everything too.
    let all = host.open_as("/chat", Identity::with_claims("root", &json!({"channels": ["*"]})).unwrap());
    assert_eq!(subscribe(&host, all, "secret")["event"], "subscribed");
}

#[test]
fn require_permissions_denies_identities_without_claims() {
    let host = TestHost::new().config("require_permissions", "true");
    let plain = user(&host, "ada");
    assert!(subscribe(&host, plain, "lobby")["reason"].as_str().unwrap().starts_with("permission denied"));
    let granted = host.open_as("/chat", Identity::with_claims("bob", &json!({"channels": ["lobby"]})).unwrap());
    assert_eq!(subscribe(&host, granted, "lobby")["event"], "subscribed");
}

#[test]
fn presence_events_can_be_turned_off_for_large_channels() {
    let host = TestHost::new().config("presence", "false");
    let (ada, bob) = (user(&host, "ada"), user(&host, "bob"));
    subscribe(&host, ada, "wide");
    assert_eq!(subscribe(&host, bob, "wide")["count"], 2, "subscribe still answers with the members");
    assert!(got(&host, ada).is_empty(), "no join event");
    host.close(&Rooms, bob, 1000, "");
    assert!(got(&host, ada).is_empty(), "no leave event");
}

#[test]
fn with_summary_secs_members_get_a_summary_every_interval_while_the_channel_has_members() {
    use std::time::Duration;
    let host = TestHost::new().config("summary_secs", "5").config("presence", "false");
    let (ada, bob) = (user(&host, "ada"), user(&host, "bob"));
    subscribe(&host, ada, "lobby");
    assert_eq!(host.timers().len(), 1, "the first member arms the summary");
    subscribe(&host, bob, "lobby");
    assert_eq!(host.timers()[0].due_in, Duration::from_secs(5), "a second member does not move it");
    assert_eq!(host.advance(&Rooms, Duration::from_secs(10)), ["summary:lobby", "summary:lobby"]);
    let summary = json!({"event": "summary", "channel": "lobby", "members": 2});
    assert_eq!(got(&host, ada), vec![summary.clone(), summary.clone()]);
    assert_eq!(got(&host, bob), vec![summary.clone(), summary]);
    host.close(&Rooms, bob, 1000, "");
    host.advance(&Rooms, Duration::from_secs(5));
    assert_eq!(got(&host, ada), vec![json!({"event": "summary", "channel": "lobby", "members": 1})]);
    send(&host, ada, json!({"event": "unsubscribe", "channel": "lobby"}));
    got(&host, ada);
    assert_eq!(host.advance(&Rooms, Duration::from_secs(5)), ["summary:lobby"]);
    assert!(host.timers().is_empty(), "an empty channel's summary lapses");
    subscribe(&host, ada, "lobby");
    assert_eq!(host.timers().len(), 1, "and its next first member arms it again");
}

#[test]
fn without_summary_secs_no_timer_is_set() {
    let host = TestHost::new();
    let ada = user(&host, "ada");
    subscribe(&host, ada, "lobby");
    assert!(host.timers().is_empty());
}

#[test]
fn webhooks_report_occupied_members_and_vacated_in_order() {
    let url = "https://backend.example.com/hooks";
    let host = TestHost::new().config("webhook_url", url).config("webhook_secret", "s3cret");
    let (ada, bob) = (user(&host, "ada"), user(&host, "bob"));
    subscribe(&host, ada, "lobby");
    subscribe(&host, bob, "lobby");
    subscribe(&host, bob, "lobby"); // again: nothing new
    send(&host, ada, json!({"event": "unsubscribe", "channel": "lobby"}));
    host.close(&Rooms, bob, 1000, "");
    let hooks = host.webhooks();
    assert!(hooks.iter().all(|h| h.url == url && h.signing.as_ref().is_some_and(|s| s.secret() == "s3cret")));
    let events: Vec<Value> = hooks.into_iter().map(|h| h.event).collect();
    assert_eq!(
        events,
        vec![
            json!({"name": "channel_occupied", "channel": "lobby"}),
            json!({"name": "member_added", "channel": "lobby", "user_id": "ada"}),
            json!({"name": "member_added", "channel": "lobby", "user_id": "bob"}),
            json!({"name": "member_removed", "channel": "lobby", "user_id": "ada"}),
            json!({"name": "member_removed", "channel": "lobby", "user_id": "bob"}),
            json!({"name": "channel_vacated", "channel": "lobby"}),
        ]
    );
}

#[test]
fn no_webhooks_without_a_url() {
    let host = TestHost::new();
    let ada = user(&host, "ada");
    subscribe(&host, ada, "lobby");
    host.close(&Rooms, ada, 1000, "");
    assert!(host.webhooks().is_empty());
}

#[test]
fn messages_of_history_channels_carry_their_position_and_a_resubscribe_gets_what_was_missed() {
    let host = TestHost::new().history("orders*", 100);
    let (ada, bob) = (user(&host, "ada"), user(&host, "bob"));
    let reply = subscribe(&host, ada, "orders");
    assert_eq!((reply["recovered"].clone(), reply["offset"].clone()), (json!(false), json!(0)));
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    send(&host, ada, json!({"event": "publish", "channel": "orders", "data": 1}));
    let first = got(&host, ada).pop().unwrap();
    assert_eq!(
        first,
        json!({"event": "message", "channel": "orders", "data": 1, "from": "ada", "offset": 1, "epoch": epoch})
    );
    send(&host, ada, json!({"event": "publish", "channel": "orders", "data": 2}));
    send(&host, ada, json!({"event": "publish", "channel": "orders", "data": 3, "id": 7}));
    let receipt = got(&host, ada).pop().unwrap();
    assert_eq!((receipt["event"].clone(), receipt["offset"].clone()), (json!("published"), json!(3)));

    // bob saw offset 1: he gets 2 and 3, then the reply.
    send(&host, bob, json!({"event": "subscribe", "channel": "orders", "since": {"offset": 1, "epoch": epoch}}));
    let events = got(&host, bob);
    let offsets: Vec<&Value> = events.iter().map(|e| &e["offset"]).collect();
    assert_eq!(offsets, [&json!(2), &json!(3), &json!(3)]);
    assert_eq!(events[2]["event"], "subscribed");
    assert_eq!(events[2]["recovered"], true);

    // Channels without history: no positions, and a since is answered recovered:false.
    send(&host, ada, json!({"event": "subscribe", "channel": "lobby", "since": {"offset": 1, "epoch": epoch}}));
    let reply = got(&host, ada).pop().unwrap();
    assert_eq!((reply["event"].clone(), reply["recovered"].clone()), (json!("subscribed"), json!(false)));
    assert!(reply.get("offset").is_none());
    send(&host, ada, json!({"event": "publish", "channel": "lobby", "data": 1}));
    assert!(got(&host, ada).pop().unwrap().get("offset").is_none());
}

#[test]
fn a_bad_since_subscribes_without_recovery() {
    let host = TestHost::new().history("orders", 100);
    let (ada, bob) = (user(&host, "ada"), user(&host, "bob"));
    subscribe(&host, ada, "orders");
    send(&host, ada, json!({"event": "publish", "channel": "orders", "data": 1}));
    let epoch = got(&host, ada).pop().unwrap()["epoch"].clone();
    for since in [
        json!({"offset": 5, "epoch": epoch}),
        json!({"offset": 0, "epoch": "other"}),
        json!({"offset": "x"}),
        json!("nonsense"),
        json!({"offset": -1, "epoch": epoch}),
    ] {
        send(&host, bob, json!({"event": "subscribe", "channel": "orders", "since": since}));
        let events = got(&host, bob);
        assert_eq!(events.len(), 1, "{since}: {events:?}");
        assert_eq!((events[0]["event"].clone(), events[0]["recovered"].clone()), (json!("subscribed"), json!(false)));
        assert_eq!(events[0]["offset"], 1);
    }
    // Still subscribed: live messages arrive.
    send(&host, ada, json!({"event": "publish", "channel": "orders", "data": 2}));
    assert_eq!(got(&host, bob).pop().unwrap()["offset"], 2);
    // A history lost (a restart): the old epoch is not recovered.
    host.lose_history("orders");
    send(&host, bob, json!({"event": "subscribe", "channel": "orders", "since": {"offset": 2, "epoch": epoch}}));
    let reply = got(&host, bob).pop().unwrap();
    assert_eq!(reply["recovered"], false);
    assert_ne!(reply["epoch"], epoch);
}

#[test]
fn a_users_second_tab_announces_no_join_and_only_the_last_leave_is_announced() {
    let host = TestHost::new();
    let ada = user(&host, "ada");
    subscribe(&host, ada, "lobby");
    let (tab1, tab2) = (user(&host, "bob"), user(&host, "bob"));
    subscribe(&host, tab1, "lobby");
    assert_eq!(got(&host, ada), vec![json!({"event": "join", "channel": "lobby", "user": "bob"})]);
    let reply = subscribe(&host, tab2, "lobby");
    assert_eq!(got(&host, ada), Vec::<Value>::new(), "bob's second tab is not a second join");
    assert_eq!((reply["count"].clone(), reply["members"].clone()), (json!(3), json!(["ada", "bob"])));
    send(&host, tab1, json!({"event": "unsubscribe", "channel": "lobby"}));
    assert_eq!(got(&host, ada), Vec::<Value>::new(), "bob is still there in his other tab");
    host.close(&Rooms, tab2, 1000, "bye");
    assert_eq!(got(&host, ada), vec![json!({"event": "leave", "channel": "lobby", "user": "bob"})]);
}

#[test]
fn a_user_present_on_another_node_is_not_announced_again_and_is_listed() {
    let host = TestHost::new();
    let ada = user(&host, "ada");
    subscribe(&host, ada, "lobby");
    host.elsewhere("lobby", "bob", 1);
    host.elsewhere("lobby", "cy", 2);
    let bob = user(&host, "bob");
    let reply = subscribe(&host, bob, "lobby");
    assert_eq!(got(&host, ada), Vec::<Value>::new(), "bob joined on another node first");
    assert_eq!((reply["count"].clone(), reply["members"].clone()), (json!(5), json!(["ada", "bob", "cy"])));
    host.close(&Rooms, bob, 1000, "bye");
    assert_eq!(got(&host, ada), Vec::<Value>::new(), "bob is still on the other node");
}

#[test]
fn with_redis_unreachable_joins_fall_back_on_this_node_and_replies_say_so() {
    let host = TestHost::new();
    host.presence_unknown(true);
    let ada = user(&host, "ada");
    let reply = subscribe(&host, ada, "lobby");
    assert_eq!(reply["cluster"], false, "the member list is this node's only");
    let bob = user(&host, "bob");
    subscribe(&host, bob, "lobby");
    assert_eq!(got(&host, ada), vec![json!({"event": "join", "channel": "lobby", "user": "bob"})]);
    host.presence_unknown(false);
    assert_eq!(subscribe(&host, ada, "other").get("cluster"), None);
}
