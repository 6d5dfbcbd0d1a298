// The probe's code, shared by `probe` and `probe-v2` (included, so each crate builds it with
// its own `VERSION`).

use wasmsock_sdk::{
    Conn, Connect, Flow, HttpRequest, HttpResponse, Identity, Message, Plugin, Request, export_plugin, rooms, timers,
    users,
};

#[derive(Default)]
pub struct Probe;

/// `name=value` of an HTTP request's query.
fn param(req: &HttpRequest, name: &str) -> Option<String> {
    req.query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).map(str::to_owned)
}

impl Plugin for Probe {
    /// `/echo` describes the request; `/trap` panics; `/spin` never returns; `/send?user=U`,
    /// `/close?user=U` and `/count?user=U` use the users calls (`count`: this node's,
    /// `everywhere`: every node's, `null` when unknown); `/publish?room=R` publishes the body.
    fn on_request(&self, req: &HttpRequest) -> HttpResponse {
        let text = String::from_utf8_lossy(&req.body).into_owned();
        let user = param(req, "user").unwrap_or_default();
        let json = |v: serde_json::Value| HttpResponse::json(200, &v);
        match req.subpath() {
            "/echo" => json(serde_json::json!({
                "version": VERSION, "method": req.method, "path": req.path, "query": req.query,
                "body": text, "remote": req.remote_addr, "route": req.route,
            })),
            "/trap" => panic!("probe traps on request"),
            "/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/send" => match users::send(&user, Message::from(text)) {
                Ok(n) => json(serde_json::json!({ "queued": n })),
                Err(e) => HttpResponse::text(400, &e.to_string()),
            },
            "/close" => match users::close(&user, 4001, "closed by the backend") {
                Ok(n) => json(serde_json::json!({ "closed": n })),
                Err(e) => HttpResponse::text(400, &e.to_string()),
            },
            "/count" => json(serde_json::json!({
                "count": users::connections(&user),
                "everywhere": users::connections_everywhere(&user),
            })),
            "/publish" => match rooms::publish(&param(req, "room").unwrap_or_default(), Message::from(text), None) {
                Ok(n) => json(serde_json::json!({ "queued": n })),
                Err(e) => HttpResponse::text(400, &e.to_string()),
            },
            other => HttpResponse::text(404, &format!("no {other}")).with_header("x-probe", "404"),
        }
    }

    fn on_connect(&self, conn: Conn, req: &Request) -> Connect {
        if let Some(status) = req.query_param("reject") {
            let status = status.parse().unwrap_or(403);
            return Connect::reject(status, req.query_param("reason").unwrap_or_else(|| "rejected by probe".into()));
        }
        if req.query_param("monitor").is_some() {
            let _ = conn.join("monitor");
            let _ = conn.set_attachment(b"monitor");
        }
        if req.query_param("slow-close").is_some() {
            let _ = conn.set_attachment(b"slow-close");
        }
        let answer = match req.query_param("as").as_deref() {
            Some("cert") => {
                let subject = req.client_cert_subject.clone().unwrap_or_else(|| "no certificate".into());
                Connect::accept_as(Identity::new(subject))
            }
            Some(name) => Connect::accept_as(Identity::new(name)),
            None => Connect::accept(),
        };
        match req.query_param("protocol") {
            Some(p) => answer.with_protocol(p),
            None => answer,
        }
    }

    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let text = msg.as_text().unwrap_or_default().to_owned();
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("close"), Some(code), reason) => {
                let code = code.parse().unwrap_or(1000);
                if let Err(e) = conn.close(code, reason.unwrap_or("")) {
                    let _ = conn.send_text(&format!("close refused: {e}"));
                }
                Flow::Done
            }
            (Some("whoami"), _, _) => {
                let who = conn.identity().map_or_else(|| "nobody".to_owned(), |i| i.id);
                let _ = conn.send_text(&who);
                Flow::Done
            }
            (Some("version"), _, _) => {
                let _ = conn.send_text(VERSION);
                Flow::Done
            }
            (Some("id"), _, _) => {
                let _ = conn.send_text(&conn.id().to_string());
                Flow::Done
            }
            // Addressing another connection by id (allowed only on routes this plugin serves).
            (Some("send-to"), Some(id), text) => {
                let target = Conn::from_raw(id.parse().unwrap_or(0));
                let answer = match target.send_text(text.unwrap_or("")) {
                    Ok(()) => "sent".to_owned(),
                    Err(e) => format!("send-to refused: {e}"),
                };
                let _ = conn.send_text(&answer);
                Flow::Done
            }
            // Host-held state, for reload tests.
            (Some("kv-set"), Some(k), v) => {
                let r = wasmsock_sdk::kv::set(k, v.unwrap_or("").as_bytes());
                let _ = conn.send_text(&format!("kv-set {}", if r.is_ok() { "ok" } else { "failed" }));
                Flow::Done
            }
            // One vote: an atomic increment, answered with the new count.
            (Some("kv-incr"), Some(k), _) => {
                let reply = match wasmsock_sdk::kv::increment(k, 1) {
                    Ok(n) => format!("kv-incr {n}"),
                    Err(e) => format!("kv-incr failed: {e}"),
                };
                let _ = conn.send_text(&reply);
                Flow::Done
            }
            // One vote as read-modify-write with compare-and-set: retried until it wins.
            (Some("kv-cas-incr"), Some(k), _) => {
                let reply = loop {
                    let old = wasmsock_sdk::kv::get(k);
                    let n: u64 = old.as_deref().and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0);
                    match wasmsock_sdk::kv::compare_and_set(k, old.as_deref(), Some((n + 1).to_string().as_bytes())) {
                        Ok(true) => break format!("kv-cas-incr {}", n + 1),
                        Ok(false) => continue,
                        Err(e) => break format!("kv-cas-incr failed: {e}"),
                    }
                };
                let _ = conn.send_text(&reply);
                Flow::Done
            }
            (Some("kv-list"), Some(prefix), _) => {
                let page = wasmsock_sdk::kv::list(prefix, None, 1000);
                let _ = conn.send_text(&format!("kv-list {}", page.keys.join(",")));
                Flow::Done
            }
            (Some("kv-get"), Some(k), _) => {
                let v = wasmsock_sdk::kv::get(k).map(|v| String::from_utf8_lossy(&v).into_owned());
                let _ = conn.send_text(&v.unwrap_or_else(|| "(none)".into()));
                Flow::Done
            }
            (Some("attach"), Some(v), _) => {
                let _ = conn.set_attachment(v.as_bytes());
                let _ = conn.send_text("attached");
                Flow::Done
            }
            (Some("attachment"), _, _) => {
                let v = conn.attachment().map(|v| String::from_utf8_lossy(&v).into_owned());
                let _ = conn.send_text(&v.unwrap_or_else(|| "(none)".into()));
                Flow::Done
            }
            (Some("join"), Some(room), _) => {
                let _ = conn.send_text(if conn.join(room).is_ok() { "joined" } else { "join failed" });
                Flow::Done
            }
            (Some("leave"), Some(room), _) => {
                let _ = conn.send_text(if conn.leave(room) { "left" } else { "not a member" });
                Flow::Done
            }
            (Some("publish"), Some(room), text) => {
                let n = rooms::publish(room, Message::Text(text.unwrap_or("").into()), None).unwrap_or(0);
                let _ = conn.send_text(&format!("published to {n}"));
                Flow::Done
            }
            // Uses the CPU for N milliseconds (a legitimately slow handler), then answers.
            (Some("burn"), Some(ms), _) => {
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms.parse().unwrap_or(1));
                let mut spins = 0u64;
                while std::time::Instant::now() < until {
                    spins = std::hint::black_box(spins + 1);
                }
                let _ = conn.send_text("burned");
                Flow::Done
            }
            // Timers: `timer KEY MS` for this connection, `timer-free KEY MS` for none, `cancel
            // KEY`, and `timers N` (N timers of a day, keyed `flood-I`: counts what was refused).
            (Some(cmd @ ("timer" | "timer-free")), Some(key), ms) => {
                let delay = std::time::Duration::from_millis(ms.and_then(|m| m.parse().ok()).unwrap_or(0));
                let r = match cmd {
                    "timer" => timers::set_for(conn, key, delay),
                    _ => timers::set(key, delay),
                };
                let _ = conn.send_text(&match r {
                    Ok(()) => "timer set".to_owned(),
                    Err(e) => format!("timer refused: {e}"),
                });
                Flow::Done
            }
            (Some("cancel"), Some(key), _) => {
                let _ = conn.send_text(&format!("cancelled {}", timers::cancel(key)));
                Flow::Done
            }
            (Some("timers"), Some(n), _) => {
                let (n, mut ok, mut refused, mut first) = (n.parse::<u64>().unwrap_or(0), 0, 0, None);
                let start = wasmsock_sdk::kv::increment("flood", n as i64).unwrap_or(0) as u64 - n;
                for i in start..start + n {
                    match timers::set(&format!("flood-{i}"), std::time::Duration::from_secs(86_400)) {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            refused += 1;
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                let _ = conn.send_text(&format!("timers ok={ok} refused={refused} error={}", first.unwrap_or_default()));
                Flow::Done
            }
            (Some("pass"), _, _) => Flow::Pass,
            (Some("forward"), Some(rest), _) => Flow::Forward(Message::Text(rest.to_owned())),
            _ => {
                let _ = conn.send(msg);
                Flow::Done
            }
        }
    }

    /// Says `fired KEY VERSION` to the timer's connection, or to room `timers` for a timer of
    /// none; a key starting with `trap` panics.
    fn on_timer(&self, key: &str, conn: Option<Conn>) {
        if key.starts_with("trap") {
            panic!("probe traps on timer {key}");
        }
        let line = format!("fired {key} {VERSION}");
        match conn {
            Some(c) => {
                let _ = c.send_text(&line);
            }
            None => {
                let _ = rooms::publish("timers", Message::Text(line), None);
            }
        }
    }

    fn on_close(&self, conn: Conn, code: u16, reason: &str) {
        wasmsock_sdk::info!("probe on_close {} {}", conn.id(), code);
        match conn.attachment().as_deref() {
            Some(b"monitor") => return,
            // Uses its whole deadline (an on-close that does heavy bookkeeping).
            Some(b"slow-close") => loop {
                std::hint::black_box(conn.id());
            },
            _ => {}
        }
        let line = format!("closed {} {} {}", conn.id(), code, reason);
        let _ = rooms::publish("monitor", Message::Text(line), None);
    }
}

export_plugin!(Probe);
