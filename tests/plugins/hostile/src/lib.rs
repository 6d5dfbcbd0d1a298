//! Test plugin: misbehaves on request, so tests can show the host contains it.
//!
//! `on_connect` with `?mode=loop` or `?mode=panic` misbehaves at connect time. Text messages
//! select the misbehaviour: `loop`, `alloc`, `panic`, `stack`, `flood`, `file`, `socket PORT`,
//! `attach`, `print`, `env`, `loop-on-close`, `last` (the flood's report); anything else is echoed.
//!
//! Amplification and host memory: `join ROOM`; `publish ROOM SIZE` publishes one SIZE-byte
//! message and replies how it went; `publish-loop ROOM SIZE` publishes SIZE-byte messages until
//! the host refuses one and keeps the report for `last` (`publish-each PREFIX N SIZE` the same,
//! to rooms PREFIX0..PREFIX(N-1) in turn); `kv-fill PREFIX SIZE` stores SIZE-byte
//! values under PREFIX0, PREFIX1, ... until the host refuses one and replies how many it stored.

use std::hint::black_box;

use wasmsock_sdk::{Conn, Connect, Flow, Message, Plugin, Request, export_plugin, kv, rooms};

#[derive(Default)]
pub struct Hostile;

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

/// `NAME SIZE` (a size that does not parse is 0).
fn room_and_size(arg: &str) -> (&str, usize) {
    let (name, size) = arg.split_once(' ').unwrap_or((arg, "0"));
    (name, size.trim().parse().unwrap_or(0))
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let pad = black_box([depth; 64]);
    black_box(recurse(depth + 1)) + pad[3]
}

impl Plugin for Hostile {
    fn on_connect(&self, _conn: Conn, req: &Request) -> Connect {
        match req.query_param("mode").as_deref() {
            Some("loop") => spin(),
            Some("panic") => panic!("hostile plugin panics in on_connect"),
            _ => Connect::accept(),
        }
    }

    fn on_message(&self, conn: Conn, msg: Message) -> Flow {
        let text = msg.as_text().unwrap_or_default().to_owned();
        let (cmd, arg) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let reply = match cmd {
            "loop" => spin(),
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![7u8; 1 << 20]));
                }
            }
            "panic" => panic!("hostile plugin panics on request"),
            "stack" => format!("{}", recurse(0)),
            "flood" => {
                let mut sent = 0u64;
                let err = loop {
                    match conn.send_text("flood") {
                        Ok(()) => sent += 1,
                        Err(e) => break e,
                    }
                };
                // This call's send budget is spent: keep the report for the `last` command.
                let _ = conn.set_attachment(format!("flood stopped after {sent}: {err}").as_bytes());
                return Flow::Done;
            }
            "join" => match conn.join(arg) {
                Ok(()) => "joined".to_owned(),
                Err(e) => format!("join error: {e}"),
            },
            "publish" => {
                let (room, size) = room_and_size(arg);
                match rooms::publish(room, Message::Text("x".repeat(size)), None) {
                    Ok(n) => format!("published to {n}"),
                    Err(e) => format!("publish error: {e}"),
                }
            }
            "publish-loop" => {
                let (room, size) = room_and_size(arg);
                let text = "x".repeat(size);
                let mut published = 0u64;
                let err = loop {
                    match rooms::publish(room, Message::Text(text.clone()), None) {
                        Ok(_) => published += 1,
                        Err(e) => break e,
                    }
                };
                // The send budget may be spent: keep the report for the `last` command.
                let _ = conn.set_attachment(format!("published {published}: {err}").as_bytes());
                return Flow::Done;
            }
            "publish-each" => {
                // `PREFIX N SIZE`: SIZE-byte messages to rooms PREFIX0..PREFIX(N-1) in turn, each
                // its own buffer, until the host refuses one.
                let (prefix, rest) = arg.split_once(' ').unwrap_or((arg, ""));
                let (rooms_n, size) = room_and_size(rest);
                let rooms_n: usize = rooms_n.parse().unwrap_or(1).max(1);
                let text = "x".repeat(size);
                let mut published = 0usize;
                let err = loop {
                    let room = format!("{prefix}{}", published % rooms_n);
                    match rooms::publish(&room, Message::Text(text.clone()), None) {
                        Ok(_) => published += 1,
                        Err(e) => break e,
                    }
                };
                let _ = conn.set_attachment(format!("published {published}: {err}").as_bytes());
                return Flow::Done;
            }
            "kv-fill" => {
                let (prefix, size) = room_and_size(arg);
                let value = vec![7u8; size];
                let mut stored = 0u64;
                let err = loop {
                    match kv::set(&format!("{prefix}{stored}"), &value) {
                        Ok(()) => stored += 1,
                        Err(e) => break e,
                    }
                };
                format!("kv-fill stored {stored}: {err}")
            }
            "last" => String::from_utf8_lossy(&conn.attachment().unwrap_or_default()).into_owned(),
            "file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(s) => format!("file read {} bytes", s.len()),
                Err(e) => format!("file error: {e}"),
            },
            "socket" => match std::net::TcpStream::connect(("127.0.0.1", arg.parse::<u16>().unwrap_or(9))) {
                Ok(_) => "socket connected".to_owned(),
                Err(e) => format!("socket error: {e}"),
            },
            "attach" => match conn.set_attachment(&vec![1u8; 4 << 20]) {
                Ok(()) => "attach stored".to_owned(),
                Err(e) => format!("attach error: {e}"),
            },
            "print" => {
                for i in 0..2_000 {
                    println!("hostile output line {i} {}", "x".repeat(100));
                }
                "printed".to_owned()
            }
            "env" => format!("env vars: {}, args: {}", std::env::vars().count(), std::env::args().count()),
            "loop-on-close" => {
                let _ = conn.set_attachment(b"loop-on-close");
                "armed".to_owned()
            }
            _ => text.clone(),
        };
        let _ = conn.send_text(&reply);
        Flow::Done
    }

    fn on_close(&self, conn: Conn, _code: u16, _reason: &str) {
        if conn.attachment().as_deref() == Some(b"loop-on-close".as_slice()) {
            spin();
        }
    }
}

export_plugin!(Hostile);
