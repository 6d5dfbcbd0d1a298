//! Test plugin for outbound HTTP: each text message is a command, the reply says what came back.
//!
//! - `get URL` / `post URL BODY`: the answer as `STATUS BODY`, or `error: WHAT`.
//! - `say TEXT`: replies `TEXT` without any request (to check a connection's order).
//! - `sleep MS`: a sleep, which the host refuses (the call traps).
//! - on connect, `?check=URL` asks the backend first: 2xx accepts, anything else refuses.

use wasmsock_sdk::{Conn, Connect, Flow, Message, Plugin, Request, export_plugin, http};

#[derive(Default)]
pub struct Outbound;

fn describe(result: Result<http::Response, http::Error>) -> String {
    match result {
        Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
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
