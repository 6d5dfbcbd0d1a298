//! The protocol's rules and bad input, against the SDK's in-memory host.

use serde_json::{Value, json};
use wasmsock_sdk::testing::{Limits, TestHost};
use wasmsock_sdk::{Conn, Connect, Flow, Message, Request, rooms};

use crate::Pusher;
use crate::apps::App;
use crate::channel::{self, socket_id, user_room};
use crate::presence;
use crate::sign::hmac_sha256_hex;

const KEY: &str = "demo-key";
const SECRET: &str = "demo-secret";
const HOOKS: &str = "https://backend.test/pusher/webhooks";

fn host() -> TestHost {
    TestHost::new()
        .config("apps", "demo, other")
        .config("demo.key", KEY)
        .config("demo.secret", SECRET)
        .config("demo.client_events", "true")
        .config("demo.max_event_size", "100")
        .config("demo.max_presence_members", "3")
        .config("demo.webhook_url", HOOKS)
        .config("other.key", "other-key")
        .config("other.secret", "other-secret")
        .config("activity_timeout", "30")
}

fn app() -> App {
    crate::apps::by_id("demo").expect("the demo app is configured")
}

fn request(path: &str, query: &str) -> Request {
    Request { route: "/app/{key}".into(), path: path.into(), query: query.into(), ..Request::default() }
}

/// A connected client of `key`, its `connection_established` taken.
fn client(host: &TestHost, key: &str) -> Conn {
    let (conn, answer) = host.connect(&Pusher, request(&format!("/app/{key}"), "protocol=7&client=js&version=8.6.0"));
    assert_eq!(answer, Connect::accept());
    let sent = events(host, conn);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["event"], "pusher:connection_established");
    conn
}

/// What `conn` was sent, parsed; a `data` sent as a JSON string is parsed too (as pusher-js does).
fn events(host: &TestHost, conn: Conn) -> Vec<Value> {
    host.sent(conn)
        .into_iter()
        .map(|m| {
            let mut v: Value = serde_json::from_str(m.as_text().expect("text")).expect("JSON");
            if let Some(s) = v["data"].as_str()
                && let Ok(parsed) = serde_json::from_str::<Value>(s)
            {
                v["data"] = parsed;
                v["data_was_string"] = Value::Bool(true);
            }
            v
        })
        .collect()
}

fn send(host: &TestHost, conn: Conn, v: &Value) -> Flow {
    host.message(&Pusher, conn, Message::Text(v.to_string()))
}

fn subscribe(host: &TestHost, conn: Conn, data: Value) -> Vec<Value> {
    send(host, conn, &json!({"event": "pusher:subscribe", "data": data}));
    events(host, conn)
}

fn private_auth(conn: Conn, ch: &str) -> String {
    format!("{KEY}:{}", hmac_sha256_hex(SECRET, &format!("{}:{ch}", socket_id(conn))))
}

fn presence_data(conn: Conn, ch: &str, channel_data: &str) -> Value {
    let auth = hmac_sha256_hex(SECRET, &format!("{}:{ch}:{channel_data}", socket_id(conn)));
    json!({"channel": ch, "auth": format!("{KEY}:{auth}"), "channel_data": channel_data})
}

fn join_presence(host: &TestHost, conn: Conn, ch: &str, user: &str) -> Vec<Value> {
    let channel_data = json!({"user_id": user, "user_info": {"name": user.to_uppercase()}}).to_string();
    subscribe(host, conn, presence_data(conn, ch, &channel_data))
}

fn hook_names(host: &TestHost) -> Vec<String> {
    host.webhooks()
        .iter()
        .map(|h| {
            let e = &h.event;
            let who = e["user_id"].as_str().map(|u| format!(" {u}")).unwrap_or_default();
            format!("{} {}{who}", e["name"].as_str().unwrap_or("?"), e["channel"].as_str().unwrap_or("?"))
        })
        .collect()
}

#[test]
fn connection_established_carries_the_socket_id_and_activity_timeout_as_a_json_string() {
    let host = host();
    let (conn, answer) = host.connect(&Pusher, request("/app/demo-key", "protocol=7"));
    assert_eq!(answer, Connect::accept());
    let raw = host.sent(conn);
    let v: Value = serde_json::from_str(raw[0].as_text().unwrap()).unwrap();
    assert_eq!(v["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(v["data"].as_str().expect("data is a string")).unwrap();
    assert_eq!(data, json!({"socket_id": socket_id(conn), "activity_timeout": 30}));
    let sid = data["socket_id"].as_str().unwrap();
    let (a, b) = sid.split_once('.').unwrap();
    assert!(a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()), "{sid}");
    assert_eq!(host.close_requested(conn), None);
}

#[test]
fn an_unknown_app_key_gets_4001_then_a_close_with_4001() {
    let host = host();
    let (conn, answer) = host.connect(&Pusher, request("/app/nope", "protocol=7"));
    assert_eq!(answer, Connect::accept());
    let sent = events(&host, conn);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["event"], "pusher:error");
    assert_eq!(sent[0]["data"]["code"], 4001);
    assert_eq!(host.close_requested(conn).map(|c| c.0), Some(4001));
    // A long key in a multi-byte script still gets its close (the reason fits a close frame).
    let (long, _) = host.connect(&Pusher, request(&format!("/app/{}", "ключ".repeat(40)), "protocol=7"));
    assert_eq!(host.close_requested(long).map(|c| c.0), Some(4001));
    // Nothing it sends afterwards is served.
    assert_eq!(send(&host, conn, &json!({"event": "pusher:ping"})), Flow::Done);
}

#[test]
fn the_protocol_version_must_be_given_numeric_and_at_least_7() {
    let host = host();
    for (query, code) in [("", 4008), ("protocol=x", 4006), ("protocol=6", 4007), ("client=js", 4008)] {
        let (conn, answer) = host.connect(&Pusher, request("/app/demo-key", query));
        assert_eq!(answer, Connect::accept());
        let sent = events(&host, conn);
        assert_eq!(sent[0]["data"]["code"], code, "{query}");
        assert_eq!(host.close_requested(conn).map(|c| c.0), Some(code), "{query}");
    }
    let (conn, _) = host.connect(&Pusher, request("/app/demo-key", "protocol=8"));
    assert_eq!(events(&host, conn)[0]["event"], "pusher:connection_established");
}

#[test]
fn ping_gets_pong() {
    let host = host();
    let c = client(&host, KEY);
    assert_eq!(send(&host, c, &json!({"event": "pusher:ping", "data": {}})), Flow::Done);
    assert_eq!(events(&host, c)[0]["event"], "pusher:pong");
}

#[test]
fn public_subscribe_and_unsubscribe() {
    let host = host();
    let c = client(&host, KEY);
    let sent = subscribe(&host, c, json!({"channel": "news"}));
    assert_eq!(sent[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(sent[0]["channel"], "news");
    assert_eq!(sent[0]["data_was_string"], true);
    assert_eq!(host.members("demo:news"), [c]);
    // Subscribing again answers again, and joins nothing twice.
    assert_eq!(subscribe(&host, c, json!({"channel": "news"}))[0]["event"], "pusher_internal:subscription_succeeded");
    // A data sent as a JSON string works as well (older clients).
    let as_string = json!({"channel": "sports"}).to_string();
    assert_eq!(subscribe(&host, c, Value::String(as_string))[0]["channel"], "sports");
    send(&host, c, &json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}));
    assert!(host.members("demo:news").is_empty());
    assert_eq!(host.members("demo:sports"), [c]);
    // Unsubscribing from a channel it is not in is harmless.
    send(&host, c, &json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}));
    assert!(events(&host, c).is_empty());
}

#[test]
fn apps_do_not_share_channels() {
    let host = host();
    let (a, b) = (client(&host, KEY), client(&host, "other-key"));
    subscribe(&host, a, json!({"channel": "news"}));
    subscribe(&host, b, json!({"channel": "news"}));
    assert_eq!(host.members("demo:news"), [a]);
    assert_eq!(host.members("other:news"), [b]);
}

#[test]
fn private_and_encrypted_channels_need_the_apps_signature() {
    let host = host();
    let c = client(&host, KEY);
    for ch in ["private-orders", "private-encrypted-dm"] {
        let sent = subscribe(&host, c, json!({"channel": ch, "auth": private_auth(c, ch)}));
        assert_eq!(sent[0]["event"], "pusher_internal:subscription_succeeded", "{ch}");
        assert_eq!(host.members(&format!("demo:{ch}")), [c]);
    }
    let other = client(&host, KEY);
    let ch = "private-orders";
    let good = private_auth(other, ch);
    let (_, sig) = good.split_once(':').unwrap();
    let bad = [
        None,
        Some(String::new()),
        Some(private_auth(c, ch)),              // another connection's signature
        Some(private_auth(other, "private-x")), // another channel's
        Some(format!("other-key:{sig}")),       // another app's key
        Some(format!("{KEY}:{}", &sig[1..])),   // truncated
        Some(sig.to_owned()),                   // no key
    ];
    for auth in bad {
        let mut data = json!({"channel": ch});
        if let Some(a) = &auth {
            data["auth"] = Value::from(a.as_str());
        }
        let sent = subscribe(&host, other, data);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["event"], "pusher:subscription_error", "{auth:?}");
        assert_eq!(sent[0]["channel"], ch);
        assert_eq!(sent[0]["data"]["type"], "AuthError");
        assert_eq!(sent[0]["data"]["status"], 401);
        assert_eq!(host.members("demo:private-orders"), [c]);
    }
    assert!(host.is_open(other));
}

#[test]
fn channel_names_outside_the_rules_get_a_subscription_error() {
    let host = host();
    let c = client(&host, KEY);
    for ch in [String::new(), "a b".into(), "ünï".into(), "x".repeat(165), "#server-to-user-x".into()] {
        let sent = subscribe(&host, c, json!({"channel": ch}));
        assert_eq!(sent[0]["event"], "pusher:subscription_error", "{ch}");
    }
    // No channel at all, or not a string: an error, the connection stays.
    for data in [json!({}), json!({"channel": 7}), json!("not json"), json!(null)] {
        let sent = subscribe(&host, c, data.clone());
        assert_eq!(sent[0]["event"], "pusher:error", "{data}");
    }
    assert!(c.rooms().is_empty());
    assert!(host.is_open(c));
    // The longest legal name needs a `[host] max_room_name` that fits it with the app id.
    let longest = "=@,.;-_Aa0".repeat(17)[..164].to_owned();
    let sent = subscribe(&host, c, json!({"channel": longest}));
    assert_eq!((&sent[0]["event"], &sent[0]["data"]["status"]), (&json!("pusher:subscription_error"), &json!(400)));
    drop(host);
    let host = self::host().limits(Limits { max_room_name: 200, ..Limits::default() });
    let c = client(&host, KEY);
    assert_eq!(subscribe(&host, c, json!({"channel": longest}))[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn malformed_and_binary_input_get_pusher_error_and_the_connection_stays() {
    let host = host();
    let c = client(&host, KEY);
    for bad in ["", "{", "[]", "42", r#"{"data":{}}"#, r#"{"event":5}"#] {
        assert_eq!(host.message(&Pusher, c, Message::from(bad)), Flow::Done);
        let sent = events(&host, c);
        assert_eq!(sent[0]["event"], "pusher:error", "{bad}");
        assert_eq!(sent[0]["data"]["code"], Value::Null);
    }
    host.message(&Pusher, c, Message::Binary(vec![1, 2, 3]));
    assert_eq!(events(&host, c)[0]["event"], "pusher:error");
    assert_eq!(host.close_requested(c), None);
    send(&host, c, &json!({"event": "pusher:ping"}));
    assert_eq!(events(&host, c)[0]["event"], "pusher:pong");
}

#[test]
fn other_events_pass_to_the_next_plugin_and_unknown_pusher_events_are_ignored() {
    let host = host();
    let c = client(&host, KEY);
    assert_eq!(send(&host, c, &json!({"event": "my-app:hello", "data": {}})), Flow::Pass);
    assert_eq!(send(&host, c, &json!({"event": "pusher:whatever"})), Flow::Done);
    assert!(events(&host, c).is_empty());
}

#[test]
fn presence_lists_members_once_per_user_and_announces_joins_and_leaves_once() {
    let host = host();
    let ch = "presence-room";
    let (ada1, ada2, bob) = (client(&host, KEY), client(&host, KEY), client(&host, KEY));

    let sent = join_presence(&host, ada1, ch, "ada");
    assert_eq!(sent[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(sent[0]["data"], json!({"presence": {"ids": ["ada"], "hash": {"ada": {"name": "ADA"}}, "count": 1}}));

    let sent = join_presence(&host, bob, ch, "bob");
    assert_eq!(sent[0]["data"]["presence"]["count"], 2);
    assert_eq!(sent[0]["data"]["presence"]["ids"], json!(["ada", "bob"]));
    let to_ada = events(&host, ada1);
    assert_eq!(to_ada.len(), 1);
    assert_eq!(to_ada[0]["event"], "pusher_internal:member_added");
    assert_eq!(to_ada[0]["channel"], ch);
    assert_eq!(to_ada[0]["data"], json!({"user_id": "bob", "user_info": {"name": "BOB"}}));

    // Ada's second connection: no second member_added, still two members.
    let sent = join_presence(&host, ada2, ch, "ada");
    assert_eq!(sent[0]["data"]["presence"]["count"], 2);
    assert!(events(&host, ada1).is_empty());
    assert!(events(&host, bob).is_empty());
    let ids: Vec<String> = presence::members(&app(), ch).into_iter().map(|m| m.user_id).collect();
    assert_eq!(ids, ["ada", "bob"]);

    // One of Ada's connections leaves: she is still there.
    send(&host, ada1, &json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}));
    assert!(events(&host, bob).is_empty());
    // The other one closes: now she left.
    host.close(&Pusher, ada2, 1000, "");
    let to_bob = events(&host, bob);
    assert_eq!(to_bob.len(), 1);
    assert_eq!(to_bob[0]["event"], "pusher_internal:member_removed");
    assert_eq!(to_bob[0]["data"], json!({"user_id": "ada"}));
    assert_eq!(presence::members(&app(), ch).len(), 1);

    assert_eq!(
        hook_names(&host),
        [
            "channel_occupied presence-room",
            "member_added presence-room ada",
            "member_added presence-room bob",
            "member_removed presence-room ada",
        ]
    );
    host.close(&Pusher, bob, 1006, "");
    assert_eq!(hook_names(&host)[4..], ["member_removed presence-room bob", "channel_vacated presence-room"]);
}

#[test]
fn presence_user_ids_may_be_numbers_and_user_info_is_optional() {
    let host = host();
    let c = client(&host, KEY);
    let sent = subscribe(&host, c, presence_data(c, "presence-n", r#"{"user_id":42}"#));
    assert_eq!(sent[0]["data"]["presence"]["ids"], json!(["42"]));
}

#[test]
fn presence_refuses_bad_signatures_bad_channel_data_and_a_full_channel() {
    let host = host();
    let ch = "presence-room";
    let c = client(&host, KEY);
    let good = json!({"user_id": "ada"}).to_string();
    let mut tampered = presence_data(c, ch, &good);
    tampered["channel_data"] = Value::from(json!({"user_id": "root"}).to_string());
    let big = json!({"user_id": "ada", "user_info": "x".repeat(3000)}).to_string();
    let cases = [
        (json!({"channel": ch, "auth": private_auth(c, ch)}), 401), // no channel_data
        (tampered, 401),
        (presence_data(c, ch, "not json"), 401),
        (presence_data(c, ch, r#"{"user_info":{}}"#), 401),
        (presence_data(c, ch, r#"{"user_id":""}"#), 401),
        (presence_data(c, ch, r#"{"user_id":["a"]}"#), 401),
        (presence_data(c, ch, &big), 413),
    ];
    for (data, status) in cases {
        let sent = subscribe(&host, c, data.clone());
        assert_eq!(sent[0]["event"], "pusher:subscription_error", "{data}");
        assert_eq!(sent[0]["data"]["status"], status, "{data}");
    }
    assert!(c.rooms().is_empty());

    // max_presence_members = 3: a fourth user is refused, another connection of a member is not.
    for user in ["a", "b", "c"] {
        let conn = client(&host, KEY);
        assert_eq!(join_presence(&host, conn, ch, user)[0]["event"], "pusher_internal:subscription_succeeded");
    }
    let d = client(&host, KEY);
    let sent = join_presence(&host, d, ch, "d");
    assert_eq!(sent[0]["event"], "pusher:subscription_error");
    assert_eq!(sent[0]["data"]["type"], "LimitReached");
    let a2 = client(&host, KEY);
    assert_eq!(join_presence(&host, a2, ch, "a")[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn client_events_reach_the_channels_other_members_with_the_user_id_on_presence() {
    let host = host();
    let (a, b, outsider) = (client(&host, KEY), client(&host, KEY), client(&host, KEY));
    for c in [a, b] {
        subscribe(&host, c, json!({"channel": "private-chat", "auth": private_auth(c, "private-chat")}));
    }
    join_presence(&host, a, "presence-chat", "ada");
    join_presence(&host, b, "presence-chat", "bob");
    events(&host, a);
    let ev = json!({"event": "client-typing", "channel": "private-chat", "data": {"on": true}});
    assert_eq!(send(&host, a, &ev), Flow::Done);
    assert!(events(&host, a).is_empty(), "not echoed to the sender");
    assert_eq!(events(&host, b), std::slice::from_ref(&ev));
    assert!(events(&host, outsider).is_empty());

    send(&host, b, &json!({"event": "client-hi", "channel": "presence-chat", "data": "hello"}));
    let got = events(&host, a);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["user_id"], "bob");
    assert_eq!(got[0]["data"], "hello");

    let hooks: Vec<Value> =
        host.webhooks().into_iter().map(|h| h.event).filter(|e| e["name"] == "client_event").collect();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0]["data"], r#"{"on":true}"#);
    assert_eq!(hooks[0]["socket_id"], socket_id(a));
    assert!(hooks[0].get("user_id").is_none());
    assert_eq!(hooks[1]["user_id"], "bob");
    assert_eq!(hooks[1]["event"], "client-hi");
}

#[test]
fn client_events_are_refused_where_not_allowed() {
    let host = host();
    let (a, b) = (client(&host, KEY), client(&host, KEY));
    for c in [a, b] {
        subscribe(&host, c, json!({"channel": "news"}));
        subscribe(&host, c, json!({"channel": "private-chat", "auth": private_auth(c, "private-chat")}));
    }
    subscribe(&host, a, json!({"channel": "private-encrypted-x", "auth": private_auth(a, "private-encrypted-x")}));
    events(&host, a);
    let cases = [
        (json!({"event": "client-x", "channel": "news", "data": {}}), 4301),
        (json!({"event": "client-x", "channel": "private-encrypted-x", "data": {}}), 4301),
        (json!({"event": "client-x", "channel": "private-other", "data": {}}), 4009),
        (json!({"event": "client-x", "data": {}}), 4301),
        (json!({"event": "client-x", "channel": "private-chat", "data": "x".repeat(101)}), 4301),
        (json!({"event": "client-x", "channel": "private-chat", "data": {"k": "x".repeat(95)}}), 4301),
    ];
    for (ev, code) in cases {
        send(&host, a, &ev);
        let sent = events(&host, a);
        assert_eq!(sent.len(), 1, "{ev}");
        assert_eq!(sent[0]["event"], "pusher:error", "{ev}");
        assert_eq!(sent[0]["data"]["code"], code, "{ev}");
    }
    assert!(events(&host, b).is_empty());
    // Exactly the bound passes.
    send(&host, a, &json!({"event": "client-x", "channel": "private-chat", "data": "x".repeat(100)}));
    assert_eq!(events(&host, b).len(), 1);
    assert!(host.is_open(a));

    // An app without client events refuses them all.
    let c = client(&host, "other-key");
    let auth = format!("other-key:{}", hmac_sha256_hex("other-secret", &format!("{}:private-chat", socket_id(c))));
    subscribe(&host, c, json!({"channel": "private-chat", "auth": auth}));
    send(&host, c, &json!({"event": "client-x", "channel": "private-chat", "data": {}}));
    assert_eq!(events(&host, c)[0]["data"]["code"], 4301);
}

#[test]
fn signin_joins_the_user_room_and_allows_the_users_channel() {
    let host = host();
    let c = client(&host, KEY);
    let user_data = json!({"id": "ada", "name": "Ada"}).to_string();
    let sig = hmac_sha256_hex(SECRET, &format!("{}::user::{user_data}", socket_id(c)));
    // Before signing in, the user's channel is refused.
    let sent = subscribe(&host, c, json!({"channel": "#server-to-user-ada"}));
    assert_eq!(sent[0]["event"], "pusher:subscription_error");

    let bad =
        json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:{}", &sig[2..]), "user_data": user_data}});
    send(&host, c, &bad);
    assert_eq!(events(&host, c)[0]["data"]["code"], 4009);
    let no_id = json!({"name": "x"}).to_string();
    let no_id_sig = hmac_sha256_hex(SECRET, &format!("{}::user::{no_id}", socket_id(c)));
    send(
        &host,
        c,
        &json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:{no_id_sig}"), "user_data": no_id}}),
    );
    assert_eq!(events(&host, c)[0]["data"]["code"], 4009);
    send(&host, c, &json!({"event": "pusher:signin", "data": {}}));
    assert_eq!(events(&host, c)[0]["data"]["code"], 4009);
    assert!(c.rooms().is_empty());

    send(
        &host,
        c,
        &json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:{sig}"), "user_data": user_data}}),
    );
    let sent = events(&host, c);
    assert_eq!(sent[0]["event"], "pusher:signin_success");
    assert_eq!(sent[0]["data"]["user_data"], user_data);
    assert_eq!(host.members(&user_room(&app(), "ada")), [c]);
    let sent = subscribe(&host, c, json!({"channel": "#server-to-user-ada"}));
    assert_eq!(sent[0]["event"], "pusher_internal:subscription_succeeded");
    let sent = subscribe(&host, c, json!({"channel": "#server-to-user-bob"}));
    assert_eq!(sent[0]["event"], "pusher:subscription_error");
    assert_eq!(user_room(&app(), "ada"), "demo#user:ada");
    assert!(!channel::valid_name("demo#user:ada"));
}

#[test]
fn occupied_and_vacated_follow_the_channels_first_and_last_subscriber() {
    let host = host();
    let (a, b) = (client(&host, KEY), client(&host, KEY));
    subscribe(&host, a, json!({"channel": "news"}));
    subscribe(&host, b, json!({"channel": "news"}));
    send(&host, a, &json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}));
    assert_eq!(hook_names(&host), ["channel_occupied news"]);
    host.close(&Pusher, b, 1000, "");
    assert_eq!(hook_names(&host), ["channel_occupied news", "channel_vacated news"]);
    let hooks = host.webhooks();
    let signing = hooks[0].signing.as_ref().expect("signed");
    assert_eq!(hooks[0].url, HOOKS);
    assert_eq!(signing.signature_header(), "x-pusher-signature");
    assert_eq!(signing.secret(), SECRET);
    assert_eq!(signing.headers(), [("x-pusher-key".to_owned(), KEY.to_owned())]);
    // An app without a webhook_url emits none.
    let c = client(&host, "other-key");
    subscribe(&host, c, json!({"channel": "news"}));
    assert_eq!(host.webhooks().len(), 2);
}

#[test]
fn a_connections_channels_are_bounded_by_the_host() {
    let host = host().limits(Limits { max_rooms_per_conn: 2, ..Limits::default() });
    let c = client(&host, KEY);
    for ch in ["a", "b"] {
        assert_eq!(subscribe(&host, c, json!({"channel": ch}))[0]["event"], "pusher_internal:subscription_succeeded");
    }
    let sent = subscribe(&host, c, json!({"channel": "c"}));
    assert_eq!(sent[0]["event"], "pusher:subscription_error");
    assert_eq!(sent[0]["data"]["type"], "LimitReached");
    assert_eq!(rooms::count("demo:c"), 0);

    // The attachment bound: the state that does not fit is not kept, nor the room joined.
    let host2 = self::host().limits(Limits { max_attachment: 200, ..Limits::default() });
    let c = client(&host2, KEY);
    let mut refused = None;
    for i in 0..10 {
        let ch = format!("channel-with-a-longish-name-{i}");
        let sent = subscribe(&host2, c, json!({"channel": ch}));
        if sent[0]["event"] == "pusher:subscription_error" {
            refused = Some(ch);
            break;
        }
    }
    let ch = refused.expect("the attachment bound refused a subscription");
    assert_eq!(rooms::count(&format!("demo:{ch}")), 0);
    assert!(host2.is_open(c));
}

#[test]
fn of_two_connections_of_a_user_joining_at_once_the_first_announces_the_user() {
    use crate::state::State;
    let host = host();
    let ch = "presence-room";
    let (watcher, ada1, ada2) = (client(&host, KEY), client(&host, KEY), client(&host, KEY));
    join_presence(&host, watcher, ch, "bob");
    // ada2 is half way through its own subscribe: in the room with its state written (a later
    // join number than ada1 will get), not yet done announcing.
    let member = presence::Member { user_id: "ada".into(), user_info: json!({"name": "ADA"}) };
    let mut state = State::new("demo");
    state.channels.insert(ch.into(), Some(member));
    state.joined.insert(ch.into(), u64::MAX - 1);
    state.save(ada2).unwrap();
    ada2.join(&channel::room(&app(), ch)).unwrap();
    // ada1 sees ada2 there, but ada2 joined after it: ada1 announces her.
    join_presence(&host, ada1, ch, "ada");
    let got = events(&host, watcher);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "pusher_internal:member_added");
    assert_eq!(got[0]["data"]["user_id"], "ada");
    // And a connection of hers joining later than both announces nothing.
    let ada3 = client(&host, KEY);
    join_presence(&host, ada3, ch, "ada");
    assert!(events(&host, watcher).is_empty());
}

#[test]
fn a_closing_connection_clears_its_channels_before_looking_for_the_users_other_connections() {
    use crate::state::State;
    let host = host();
    let ch = "presence-room";
    let (watcher, ada1, ada2) = (client(&host, KEY), client(&host, KEY), client(&host, KEY));
    join_presence(&host, watcher, ch, "bob");
    join_presence(&host, ada1, ch, "ada");
    join_presence(&host, ada2, ch, "ada");
    events(&host, watcher);
    // ada2 is closing at the same moment: it wrote its cleared state, and is still in the room.
    State::new("demo").save(ada2).unwrap();
    host.close(&Pusher, ada1, 1001, "");
    let got = events(&host, watcher);
    assert_eq!(got.len(), 1, "ada is not left behind: {got:?}");
    assert_eq!(got[0]["event"], "pusher_internal:member_removed");
    // What ada1 wrote in its on-close is what ada2's on-close reads: the channel gone.
    let host2 = self::host();
    let c = client(&host2, KEY);
    join_presence(&host2, c, ch, "ada");
    #[derive(Default)]
    struct Peek;
    impl wasmsock_sdk::Plugin for Peek {
        fn on_close(&self, conn: Conn, code: u16, reason: &str) {
            crate::socket::close(conn, code, reason);
            let left = State::load(conn).map(|s| s.channels.len());
            wasmsock_sdk::kv::set("left", format!("{left:?}").as_bytes()).unwrap();
        }
    }
    host2.close(&Peek, c, 1000, "");
    assert_eq!(host2.kv("left").as_deref(), Some(&b"Some(0)"[..]));
}
