//! Test plugin built against contract 0.1.0: `id`, `whoami`, `kv-set K V`, `kv-get K`,
//! `join ROOM`, `publish ROOM TEXT`; anything else is echoed. `?as=NAME` names the connection.

// The bindings wit-bindgen generates use `unsafe` for the canonical ABI.
#![allow(unsafe_code)]

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "plugin" });

    use exports::wasmsock::plugin::handler::Guest;
    use wasmsock::plugin::host;
    use wasmsock::plugin::types::{Accept, Connect, Flow, Identity, Message, Request};

    struct Legacy;

    fn reply(conn: u64, text: &str) -> Flow {
        let _ = host::send(conn, &Message::Text(text.to_owned()));
        Flow::Done
    }

    impl Guest for Legacy {
        fn on_connect(_conn: u64, req: Request) -> Connect {
            let name = req.query.split('&').find_map(|kv| kv.strip_prefix("as=")).map(str::to_owned);
            let identity = name.map(|id| Identity { id, claims: "{}".into() });
            Connect::Accept(Accept { identity, protocol: None })
        }

        fn on_message(conn: u64, msg: Message) -> Flow {
            let Message::Text(text) = &msg else { return reply(conn, "binary") };
            let mut words = text.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("id"), _, _) => reply(conn, &conn.to_string()),
                (Some("whoami"), _, _) => {
                    reply(conn, &host::identity_of(conn).map_or_else(|| "nobody".to_owned(), |i| i.id))
                }
                (Some("kv-set"), Some(k), v) => match host::kv_set(k, v.unwrap_or("").as_bytes()) {
                    Ok(()) => reply(conn, "kv-set ok"),
                    Err(e) => reply(conn, &format!("kv-set failed: {e:?}")),
                },
                (Some("kv-get"), Some(k), _) => {
                    let v = host::kv_get(k).map(|v| String::from_utf8_lossy(&v).into_owned());
                    reply(conn, &v.unwrap_or_else(|| "(none)".into()))
                }
                (Some("join"), Some(room), _) => {
                    reply(conn, if host::join(conn, room).is_ok() { "joined" } else { "join failed" })
                }
                (Some("publish"), Some(room), text) => {
                    let n = host::publish(room, &Message::Text(text.unwrap_or("").to_owned()), None).unwrap_or(0);
                    reply(conn, &format!("published to {n}"))
                }
                _ => {
                    let _ = host::send(conn, &msg);
                    Flow::Done
                }
            }
        }

        fn on_close(_conn: u64, _code: u16, _reason: String) {}
    }

    export!(Legacy);
}
