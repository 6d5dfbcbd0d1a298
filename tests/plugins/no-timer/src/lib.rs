//! Test plugin of world `plugin` (no `on-timer` export): `timer KEY` asks for a timer and
//! answers what the host said; anything else is echoed.

// The bindings wit-bindgen generates use `unsafe` for the canonical ABI.
#![allow(unsafe_code)]

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "plugin" });

    use exports::wasmsock::plugin::handler::Guest;
    use wasmsock::plugin::types::{Accept, Connect, Flow, Message, Request};
    use wasmsock::plugin::{host, timers};

    struct NoTimer;

    impl Guest for NoTimer {
        fn on_connect(_conn: u64, _req: Request) -> Connect {
            Connect::Accept(Accept { identity: None, protocol: None })
        }

        fn on_message(conn: u64, msg: Message) -> Flow {
            let reply = match &msg {
                Message::Text(t) if t.starts_with("timer ") => {
                    let r = timers::set_timer(&t["timer ".len()..], 10, Some(conn));
                    Message::Text(format!("{r:?}"))
                }
                _ => msg,
            };
            let _ = host::send(conn, &reply);
            Flow::Done
        }

        fn on_close(_conn: u64, _code: u16, _reason: String) {}
    }

    export!(NoTimer);
}
