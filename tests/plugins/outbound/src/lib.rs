//! Test plugin for outbound HTTP: each text message is a command, the reply says what came back.
//!
//! - `get URL` / `post URL BODY`: the answer as `STATUS BODY`, or `error: WHAT`.
//! - `say TEXT`: replies `TEXT` without any request (to check a connection's order).
//! - `sleep MS`: a sleep, which the host refuses (the call traps).
//! - on connect, `?check=URL` asks the backend first: 2xx accepts, anything else refuses.
//! - `hook URL JSON`: emits a webhook event; replies `queued` or `error: WHAT`.
//! - `hooks N URL`: emits `{"n": i}` for i in 0..N; replies `queued K, refused R`.
//! - `signed URL SECRET JSON`: emits signed (`x-test-signature`, with `x-test-key: key-1`).

use wasmsock_sdk::webhooks::{self, Signing};
use wasmsock_sdk::{Conn, Connect, Flow, Message, Plugin, Request, export_plugin, http};

#[derive(Default)]
pub struct Outbound;

fn describe(result: Result<http::Response, http::Error>) -> String {
    match result {
        Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
        Err(e) => format!("error: {e}"),
    }
}

fn queued(result: Result<(), wasmsock_sdk::Error>) -> String {
    match result {
        Ok(()) => "queued".to_owned(),
        Err(e) => format!("error: {e}"),
    }
}

impl Plugin for Outbound {
    fn on_connect(&self, _conn: Conn, req: &Request) -> Connect {
        let Some(url) = req.query_param("check") else { return Connect::accept() };
        match http::get(&url) {
            Ok(r) if r.is_success() => Connect::accept(),
            Ok(r) => Connect::reject(403, format!("backend said {}", r.status)),
            Err(e) => Connect::reject(503, format!("backend: {e}")),
        }
    }

    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let Some(text) = msg.as_text() else { return Flow::Pass };
        let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
        let reply = match command {
            "get" => describe(http::get(rest)),
            "post" => {
                let (url, body) = rest.split_once(' ').unwrap_or((rest, ""));
                describe(http::post(url, body))
            }
            "say" => rest.to_owned(),
            "hook" => {
                let (url, event) = rest.split_once(' ').unwrap_or((rest, ""));
                queued(webhooks::emit_json(url, event, None))
            }
            "hooks" => {
                let (n, url) = rest.split_once(' ').unwrap_or((rest, ""));
                let n: u32 = n.parse().unwrap_or(0);
                let refused =
                    (0..n).filter(|i| webhooks::emit(url, &serde_json::json!({"n": i}), None).is_err()).count();
                format!("queued {}, refused {refused}", n as usize - refused)
            }
            "signed" => {
                let mut parts = rest.splitn(3, ' ');
                let (url, secret, event) =
                    (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let signing =
                    Signing::hmac_sha256(secret).header("x-test-signature").with_header("x-test-key", "key-1");
                queued(webhooks::emit_json(url, event, Some(&signing)))
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(rest.parse().unwrap_or(10)));
                "slept".to_owned()
            }
            _ => return Flow::Pass,
        };
        let _ = conn.send_text(&reply);
        Flow::Done
    }
}

export_plugin!(Outbound);
