//! The HTTP API on the SDK's test host: signing (Pusher's worked example), every endpoint and
//! the bad input each refuses.

use serde_json::{Value, json};
use wasmsock_sdk::testing::TestHost;
use wasmsock_sdk::{Conn, HttpRequest};

use super::auth::string_to_sign;
use super::*;
use crate::channel;
use crate::sign;

const NOW: u64 = 1_700_000_000;

fn host() -> TestHost {
    TestHost::new()
        .config("apps", "demo, other")
        .config("demo.key", "demo-key")
        .config("demo.secret", "demo-secret")
        .config("demo.max_event_size", "100")
        .config("other.key", "other-key")
        .config("other.secret", "other-secret")
}

fn demo() -> App {
    apps::by_id("demo").expect("demo is configured")
}

/// A request signed as the Node SDK signs: `extra` query parameters, the auth ones, and the
/// signature over them.
fn signed_at(method: &str, path: &str, extra: &str, body: &str, key: &str, secret: &str, ts: u64) -> HttpRequest {
    let mut query = format!("auth_key={key}&auth_timestamp={ts}&auth_version=1.0");
    if !body.is_empty() {
        query.push_str(&format!("&body_md5={}", sign::md5_hex(body.as_bytes())));
    }
    if !extra.is_empty() {
        query.push_str(&format!("&{extra}"));
    }
    let signature = sign::hmac_sha256_hex(secret, &string_to_sign(method, path, &query, false));
    HttpRequest {
        method: method.into(),
        route: "/apps".into(),
        path: path.into(),
        query: format!("{query}&auth_signature={signature}"),
        body: body.as_bytes().to_vec(),
        remote_addr: "127.0.0.1:1".into(),
        ..Default::default()
    }
}

fn signed(method: &str, path: &str, extra: &str, body: &str) -> HttpRequest {
    signed_at(method, path, extra, body, "demo-key", "demo-secret", NOW)
}

/// Signed at the real time, for requests through `on_request` (which reads the wall clock).
fn signed_now(method: &str, path: &str, body: &str) -> HttpRequest {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    signed_at(method, path, "", body, "demo-key", "demo-secret", now)
}

fn call(req: &HttpRequest) -> Answer {
    handle_at(req, NOW)
}

fn refused(req: &HttpRequest) -> Refusal {
    match call(req) {
        Ok(v) => panic!("{} {} was answered {v}", req.method, req.path),
        Err(r) => r,
    }
}

fn post(path: &str, body: &Value) -> HttpRequest {
    signed("POST", path, "", &body.to_string())
}

fn subscriber(host: &TestHost, channel_name: &str) -> Conn {
    let conn = host.open("/app/demo-key");
    conn.join(&channel::room(&demo(), channel_name)).expect("joins");
    channel::note_subscribed(&demo(), channel_name);
    conn
}

fn received(host: &TestHost, conn: Conn) -> Vec<Value> {
    host.sent(conn).iter().map(|m| serde_json::from_str(m.as_text().expect("text")).expect("JSON")).collect()
}

#[test]
fn the_reference_worked_example_signs_as_documented() {
    let _host = TestHost::new()
        .config("apps", "3")
        .config("3.key", "278d425bdf160c739803")
        .config("3.secret", "7ad3773142a6692b25b8");
    let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    assert_eq!(sign::md5_hex(body.as_bytes()), "ec365a775a4cd0599faeb73354201b6f");
    let query = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f";
    let to_sign = string_to_sign("POST", "/apps/3/events", query, false);
    assert_eq!(
        to_sign,
        "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
    );
    let signature = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
    assert_eq!(sign::hmac_sha256_hex("7ad3773142a6692b25b8", &to_sign), signature);
    // The documented request, sent as the reference sends it (signature last), is accepted.
    let req = HttpRequest {
        method: "POST".into(),
        route: "/apps".into(),
        path: "/apps/3/events".into(),
        query: format!("{query}&auth_signature={signature}"),
        body: body.as_bytes().to_vec(),
        ..Default::default()
    };
    assert_eq!(handle_at(&req, 1_353_088_179 + 599), Ok(json!({})));
    assert_eq!(handle_at(&req, 1_353_088_179 + 601).map_err(|r| r.status), Err(401), "stale");
}

#[test]
fn the_string_to_sign_sorts_lowercases_drops_the_signature_and_unescapes() {
    let s = string_to_sign("get", "/apps/1/channels", "b=2&Name=Something%20else&auth_signature=x&a=1", false);
    assert_eq!(s, "GET\n/apps/1/channels\na=1&b=2&name=Something else");
    // `+` is a space decoded, itself raw (the Node SDK's way): both signatures are accepted.
    let _host = host();
    for raw in [false, true] {
        let query = format!("auth_key=demo-key&auth_timestamp={NOW}&auth_version=1.0&filter_by_prefix=a+b");
        let sig = sign::hmac_sha256_hex("demo-secret", &string_to_sign("GET", "/apps/demo/channels", &query, raw));
        let req = HttpRequest {
            method: "GET".into(),
            route: "/apps".into(),
            path: "/apps/demo/channels".into(),
            query: format!("{query}&auth_signature={sig}"),
            ..Default::default()
        };
        assert_eq!(call(&req), Ok(json!({"channels": {}})), "raw: {raw}");
    }
}

#[test]
fn a_trigger_reaches_the_channels_subscribers_as_a_pusher_event() {
    let host = host();
    let (a, b) = (subscriber(&host, "orders"), subscriber(&host, "orders"));
    let elsewhere = subscriber(&host, "news");
    let body = json!({"name": "placed", "channel": "orders", "data": "{\"id\":1}"});
    let resp = host.request(&crate::Pusher, signed_now("POST", "/apps/demo/events", &body.to_string()));
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"{}"[..]));
    let expected = json!({"event": "placed", "channel": "orders", "data": "{\"id\":1}"});
    assert_eq!(received(&host, a), std::slice::from_ref(&expected));
    assert_eq!(received(&host, b), [expected]);
    assert!(host.sent(elsewhere).is_empty());

    // Several channels, one sender excluded by its socket id, data that is not a string.
    let body = json!({"name": "n", "channels": ["orders", "news"], "data": {"x": 1},
        "socket_id": channel::socket_id(a)});
    assert_eq!(call(&post("/apps/demo/events", &body)), Ok(json!({})));
    assert!(host.sent(a).is_empty(), "the excluded socket");
    assert_eq!(received(&host, b), [json!({"event": "n", "channel": "orders", "data": "{\"x\":1}"})]);
    assert_eq!(received(&host, elsewhere), [json!({"event": "n", "channel": "news", "data": "{\"x\":1}"})]);

    // Another app's channel of the same name is another room.
    let other = apps::by_id("other").expect("configured");
    let stranger = host.open("/app/other-key");
    stranger.join(&channel::room(&other, "orders")).expect("joins");
    assert_eq!(call(&post("/apps/demo/events", &json!({"name": "n", "channel": "orders", "data": ""}))), Ok(json!({})));
    assert!(host.sent(stranger).is_empty());
}

#[test]
fn a_triggers_info_answers_each_channels_counts() {
    let host = host();
    subscriber(&host, "orders");
    subscriber(&host, "orders");
    let body = json!({"name": "n", "channels": ["orders", "empty", "presence-room"], "data": "d",
        "info": "subscription_count,user_count"});
    assert_eq!(
        call(&post("/apps/demo/events", &body)),
        Ok(json!({"channels": {
            "orders": {"subscription_count": 2},
            "empty": {"subscription_count": 0},
            "presence-room": {"subscription_count": 0, "user_count": 0},
        }}))
    );
    let body = json!({"name": "n", "channel": "orders", "data": "d", "info": "everything"});
    assert_eq!(refused(&post("/apps/demo/events", &body)).status, 400);
}

#[test]
fn bad_triggers_are_refused_and_publish_nothing() {
    let host = host();
    let a = subscriber(&host, "orders");
    let cases = [
        (json!({"channel": "orders", "data": "d"}), 400, "Missing event name"),
        (json!({"name": "n", "channel": "orders"}), 400, "Missing data"),
        (json!({"name": "n", "data": "d"}), 400, "Missing channel"),
        (json!({"name": "n", "channel": "orders", "channels": ["x"], "data": "d"}), 400, "either"),
        (json!({"name": "n", "channels": ["orders", "bad name"], "data": "d"}), 400, "Invalid channel name"),
        (json!({"name": "n", "channel": "x".repeat(165), "data": "d"}), 400, "Invalid channel name"),
        (json!({"name": "n".repeat(201), "channel": "orders", "data": "d"}), 400, "Event name too long"),
        (json!({"name": "n", "channel": "orders", "data": "d", "socket_id": "1-2"}), 400, "Invalid socket_id"),
        (json!({"name": "n", "channel": "orders", "data": "x".repeat(101)}), 413, "Event data too large"),
        (json!({"name": "n", "channels": vec!["orders"; 101], "data": "d"}), 400, "Too many channels"),
        (json!(["not", "an", "object"]), 400, "Invalid JSON body"),
    ];
    for (body, status, message) in cases {
        let r = refused(&post("/apps/demo/events", &body));
        assert_eq!(r.status, status, "{body}: {r:?}");
        assert!(r.message.contains(message), "{body}: {r:?}");
    }
    let r = refused(&signed("POST", "/apps/demo/events", "", "{\"name\":"));
    assert!(r.status == 400 && r.message.contains("Invalid JSON"), "{r:?}");
    // Exactly the limit is fine.
    let body = json!({"name": "n", "channel": "orders", "data": "x".repeat(100)});
    assert_eq!(call(&post("/apps/demo/events", &body)), Ok(json!({})));
    assert_eq!(received(&host, a).len(), 1, "only the last, good trigger arrived");
}

#[test]
fn a_batch_publishes_each_event_or_none() {
    let host = host();
    let (a, b) = (subscriber(&host, "orders"), subscriber(&host, "news"));
    let batch = json!({"batch": [
        {"name": "one", "channel": "orders", "data": "1"},
        {"name": "two", "channel": "news", "data": "2", "socket_id": channel::socket_id(b)},
        {"name": "three", "channel": "news", "data": "3"},
    ]});
    assert_eq!(call(&post("/apps/demo/batch_events", &batch)), Ok(json!({})));
    assert_eq!(received(&host, a), [json!({"event": "one", "channel": "orders", "data": "1"})]);
    assert_eq!(received(&host, b), [json!({"event": "three", "channel": "news", "data": "3"})]);

    let with_info = json!({"batch": [
        {"name": "one", "channel": "orders", "data": "1", "info": "subscription_count"},
        {"name": "two", "channel": "news", "data": "2"},
    ]});
    assert_eq!(
        call(&post("/apps/demo/batch_events", &with_info)),
        Ok(json!({"batch": [{"subscription_count": 1}, {}]}))
    );
    host.sent(a);
    host.sent(b);

    let too_many = json!({"batch": vec![json!({"name": "n", "channel": "orders", "data": "d"}); 11]});
    let one_bad = json!({"batch": [
        {"name": "n", "channel": "orders", "data": "d"},
        {"name": "n", "channel": "news", "data": "x".repeat(101)},
    ]});
    let no_channel = json!({"batch": [{"name": "n", "data": "d"}]});
    let no_batch = json!({"events": []});
    for (body, status) in [(too_many, 400), (one_bad, 413), (no_channel, 400), (no_batch, 400)] {
        assert_eq!(refused(&post("/apps/demo/batch_events", &body)).status, status, "{body}");
    }
    assert!(host.sent(a).is_empty() && host.sent(b).is_empty(), "a refused batch publishes nothing");
}

#[test]
fn the_channel_list_has_the_occupied_channels_filtered_by_prefix() {
    let host = host();
    subscriber(&host, "orders");
    subscriber(&host, "orders-eu");
    subscriber(&host, "presence-lobby");
    let gone = subscriber(&host, "vacated");
    gone.leave(&channel::room(&demo(), "vacated"));
    let list = |extra: &str| call(&signed("GET", "/apps/demo/channels", extra, ""));
    assert_eq!(list(""), Ok(json!({"channels": {"orders": {}, "orders-eu": {}, "presence-lobby": {}}})));
    assert_eq!(wasmsock_sdk::kv::get(&channel::index_key(&demo(), "vacated")), None, "forgotten once found empty");
    assert_eq!(
        list("filter_by_prefix=orders&info=subscription_count"),
        Ok(json!({"channels": {"orders": {"subscription_count": 1}, "orders-eu": {"subscription_count": 1}}}))
    );
    assert_eq!(
        list("filter_by_prefix=presence-&info=user_count"),
        Ok(
            json!({"channels": {"presence-lobby": {"user_count": crate::presence::members(&demo(), "presence-lobby").len()}}})
        )
    );
    assert_eq!(list("info=user_count").map_err(|r| r.status), Err(400), "user_count needs presence-");
    assert_eq!(list("info=nope").map_err(|r| r.status), Err(400));
    // Another app lists its own.
    let other = call(&signed_at("GET", "/apps/other/channels", "", "", "other-key", "other-secret", NOW));
    assert_eq!(other, Ok(json!({"channels": {}})));
}

#[test]
fn the_channel_list_follows_subscribes_and_unsubscribes_through_the_websocket_side() {
    let host = host();
    let connect = || {
        let req = wasmsock_sdk::Request {
            route: "/app/{key}".into(),
            path: "/app/demo-key".into(),
            query: "protocol=7".into(),
            ..Default::default()
        };
        host.connect(&crate::Pusher, req).0
    };
    let (a, b) = (connect(), connect());
    let say = |conn: Conn, event: &str, ch: &str| {
        let msg = json!({"event": event, "data": {"channel": ch}}).to_string();
        host.message(&crate::Pusher, conn, msg.into());
    };
    say(a, "pusher:subscribe", "news");
    say(b, "pusher:subscribe", "news");
    say(b, "pusher:subscribe", "sports");
    let list = || call(&signed("GET", "/apps/demo/channels", "", ""));
    assert_eq!(list(), Ok(json!({"channels": {"news": {}, "sports": {}}})));
    say(a, "pusher:unsubscribe", "news");
    assert_eq!(list(), Ok(json!({"channels": {"news": {}, "sports": {}}})), "b is still in news");
    say(b, "pusher:unsubscribe", "sports");
    host.close(&crate::Pusher, b, 1000, "");
    // Vacated: the key is gone before any listing would drop it.
    let keys = wasmsock_sdk::kv::list(&channel::index_prefix(&demo()), None, 10).keys;
    assert_eq!(keys, Vec::<String>::new());
    assert_eq!(list(), Ok(json!({"channels": {}})));
}

#[test]
fn a_channels_info_and_users() {
    let host = host();
    subscriber(&host, "orders");
    subscriber(&host, "orders");
    let get = |path: &str, extra: &str| call(&signed("GET", path, extra, ""));
    assert_eq!(get("/apps/demo/channels/orders", ""), Ok(json!({"occupied": true})));
    assert_eq!(
        get("/apps/demo/channels/orders", "info=subscription_count"),
        Ok(json!({"occupied": true, "subscription_count": 2}))
    );
    assert_eq!(get("/apps/demo/channels/nobody", ""), Ok(json!({"occupied": false})));
    assert_eq!(get("/apps/demo/channels/orders", "info=user_count").map_err(|r| r.status), Err(400));
    assert_eq!(get("/apps/demo/channels/bad%20name", "").map_err(|r| r.status), Err(400));
    assert_eq!(get("/apps/demo/channels/orders/users", "").map_err(|r| r.status), Err(400), "not presence");
    let users = get("/apps/demo/channels/presence-lobby/users", "").expect("answered");
    let expected: Vec<Value> =
        crate::presence::members(&demo(), "presence-lobby").iter().map(|m| json!({"id": m.user_id})).collect();
    assert_eq!(users, json!({"users": expected}));
    assert_eq!(
        get("/apps/demo/channels/presence-lobby", "info=user_count,subscription_count"),
        Ok(json!({"occupied": false, "user_count": expected.len(), "subscription_count": 0}))
    );
}

/// A pusher-js-like connection subscribed to presence channel `ch` as `user`, through the
/// plugin's WebSocket side (signed as an auth endpoint signs).
fn presence_member(host: &TestHost, ch: &str, user: &str) -> Conn {
    let req = wasmsock_sdk::Request {
        route: "/app/{key}".into(),
        path: "/app/demo-key".into(),
        query: "protocol=7".into(),
        ..Default::default()
    };
    let (conn, _) = host.connect(&crate::Pusher, req);
    let socket_id = channel::socket_id(conn);
    let channel_data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
    let sig = sign::hmac_sha256_hex("demo-secret", &format!("{socket_id}:{ch}:{channel_data}"));
    let sub = json!({"event": "pusher:subscribe",
        "data": {"channel": ch, "auth": format!("demo-key:{sig}"), "channel_data": channel_data}});
    host.message(&crate::Pusher, conn, sub.to_string().into());
    let got = received(host, conn);
    assert!(got.iter().any(|e| e["event"] == "pusher_internal:subscription_succeeded"), "{got:?}");
    conn
}

#[test]
fn a_presence_channels_users_and_user_count() {
    let host = host();
    presence_member(&host, "presence-lobby", "ada");
    presence_member(&host, "presence-lobby", "ada");
    presence_member(&host, "presence-lobby", "bob");
    let get = |path: &str, extra: &str| call(&signed("GET", path, extra, ""));
    assert_eq!(
        get("/apps/demo/channels/presence-lobby/users", ""),
        Ok(json!({"users": [{"id": "ada"}, {"id": "bob"}]}))
    );
    assert_eq!(
        get("/apps/demo/channels/presence-lobby", "info=user_count,subscription_count"),
        Ok(json!({"occupied": true, "user_count": 2, "subscription_count": 3}))
    );
    assert_eq!(
        get("/apps/demo/channels", "filter_by_prefix=presence-&info=user_count"),
        Ok(json!({"channels": {"presence-lobby": {"user_count": 2}}})),
        "listed: the subscribe noted the channel"
    );
}

#[test]
fn a_trigger_to_a_users_channel_reaches_their_signed_in_connections() {
    let host = host();
    let (ada, bob) = (host.open("/app/demo-key"), host.open("/app/demo-key"));
    ada.join(&channel::user_room(&demo(), "ada")).expect("joins");
    bob.join(&channel::user_room(&demo(), "bob")).expect("joins");
    // What the Node SDK's `sendToUser("ada", "hello", {...})` sends.
    let body = json!({"name": "hello", "channels": ["#server-to-user-ada"], "data": "{\"x\":1}"});
    assert_eq!(call(&post("/apps/demo/events", &body)), Ok(json!({})));
    assert_eq!(
        received(&host, ada),
        [json!({"event": "hello", "channel": "#server-to-user-ada", "data": "{\"x\":1}"})]
    );
    assert!(host.sent(bob).is_empty());
    for bad in ["#server-to-user-".to_owned(), format!("#server-to-user-{}", "u".repeat(65)), "#other".to_owned()] {
        let body = json!({"name": "hello", "channel": bad, "data": ""});
        assert_eq!(refused(&post("/apps/demo/events", &body)).status, 400, "{bad}");
    }
}

#[test]
fn terminating_a_user_closes_their_connections_with_4009() {
    let host = host();
    let (ada1, ada2, bob) = (host.open("/app/demo-key"), host.open("/app/demo-key"), host.open("/app/demo-key"));
    for (c, user) in [(ada1, "ada"), (ada2, "ada"), (bob, "bob")] {
        c.join(&channel::user_room(&demo(), user)).expect("joins");
    }
    assert_eq!(call(&signed("POST", "/apps/demo/users/ada/terminate_connections", "", "")), Ok(json!({})));
    for c in [ada1, ada2] {
        let error =
            json!({"event": "pusher:error", "data": {"code": 4009, "message": "Connection terminated by the app"}});
        assert_eq!(received(&host, c), [error]);
        assert_eq!(host.close_requested(c).map(|(code, _)| code), Some(4009));
    }
    assert_eq!(host.close_requested(bob), None);
    assert!(host.sent(bob).is_empty());
    assert_eq!(call(&signed("POST", "/apps/demo/users/nobody/terminate_connections", "", "")), Ok(json!({})));
}

#[test]
fn unsigned_missigned_stale_and_tampered_requests_get_401() {
    let _host = host();
    let body = json!({"name": "n", "channel": "orders", "data": "d"}).to_string();
    let good = signed("POST", "/apps/demo/events", "", &body);
    assert_eq!(call(&good), Ok(json!({})));
    let with_query = |q: String| HttpRequest { query: q, ..good.clone() };
    let drop_param = |name: &str| {
        with_query(good.query.split('&').filter(|p| !p.starts_with(&format!("{name}="))).collect::<Vec<_>>().join("&"))
    };
    let cases = [
        (drop_param("auth_key"), "Missing auth_key"),
        (drop_param("auth_signature"), "Missing auth_signature"),
        (drop_param("auth_timestamp"), "Missing auth_timestamp"),
        (drop_param("auth_version"), "Missing auth_version"),
        (with_query(good.query.replace("auth_key=demo-key", "auth_key=other-key")), "Invalid auth_key"),
        (with_query(good.query.replace("auth_version=1.0", "auth_version=2.0")), "Unsupported auth_version"),
        (with_query(format!("{}0", good.query)), "Invalid signature"),
        (HttpRequest { method: "PUT".into(), ..good.clone() }, "Invalid signature"),
        (HttpRequest { path: "/apps/demo/batch_events".into(), ..good.clone() }, "Invalid signature"),
        // Signed by the other app's secret.
        (signed_at("POST", "/apps/demo/events", "", &body, "demo-key", "other-secret", NOW), "Invalid signature"),
        (signed_at("POST", "/apps/demo/events", "", &body, "demo-key", "demo-secret", NOW - 601), "Timestamp expired"),
        (signed_at("POST", "/apps/demo/events", "", &body, "demo-key", "demo-secret", NOW + 601), "Timestamp expired"),
        // A body other than the one signed (its MD5 is in the signed query).
        (HttpRequest { body: body.replace("\"d\"", "\"e\"").into_bytes(), ..good.clone() }, "Invalid body_md5"),
    ];
    for (req, message) in cases {
        let r = refused(&req);
        assert_eq!(r.status, 401, "{message}: {r:?}");
        assert!(r.message.contains(message), "{message}: {r:?}");
    }
    // A body on a request that signed none.
    let mut no_md5 = signed("POST", "/apps/demo/users/ada/terminate_connections", "", "");
    no_md5.body = b"{}".to_vec();
    assert!(refused(&no_md5).message.contains("Missing body_md5"));
    // Within the skew is fine both ways.
    for ts in [NOW - 600, NOW + 600] {
        assert_eq!(
            call(&signed_at("POST", "/apps/demo/events", "", &body, "demo-key", "demo-secret", ts)),
            Ok(json!({}))
        );
    }
    let bad_ts = with_query(good.query.replace(&format!("auth_timestamp={NOW}"), "auth_timestamp=soon"));
    assert_eq!(refused(&bad_ts).status, 401);
}

#[test]
fn unknown_apps_paths_and_methods() {
    let host = host();
    assert_eq!(refused(&signed("POST", "/apps/nope/events", "", "")).status, 404);
    assert_eq!(refused(&signed("GET", "/apps/demo/history", "", "")).status, 404);
    assert_eq!(refused(&signed("GET", "/elsewhere", "", "")).status, 404);
    assert_eq!(refused(&signed("GET", "/apps/demo/events", "", "")).status, 405);
    assert_eq!(refused(&signed("POST", "/apps/demo/channels", "", "")).status, 405);
    // Through on_request: a text body and the allowed method.
    let resp = host.request(&crate::Pusher, signed_now("DELETE", "/apps/demo/channels/x", ""));
    assert_eq!(resp.status, 405);
    assert!(resp.headers.contains(&("allow".into(), "GET".into())), "{:?}", resp.headers);
    let resp = host.request(&crate::Pusher, signed_now("POST", "/apps/demo/events", ""));
    assert_eq!(resp.status, 400);
    // A request with a fresh timestamp passes the real clock (the host's wall clock).
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let fresh = signed_at("GET", "/apps/demo/channels", "", "", "demo-key", "demo-secret", now);
    assert_eq!(host.request(&crate::Pusher, fresh).status, 200);
    let stale = signed_at("GET", "/apps/demo/channels", "", "", "demo-key", "demo-secret", now - 3600);
    assert_eq!(host.request(&crate::Pusher, stale).status, 401);
}
