//! Test plugin for a contract version this host does not speak.

// The bindings wit-bindgen generates use `unsafe` for the canonical ABI.
#![allow(unsafe_code)]

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "plugin" });

    use exports::wasmsock::plugin::handler::Guest;
    use wasmsock::plugin::types::{Accept, Connect, Flow, Message, Request};

    struct Future;

    impl Guest for Future {
        fn on_connect(_conn: u64, _req: Request) -> Connect {
            Connect::Accept(Accept { identity: None, protocol: None })
        }
        fn on_message(_conn: u64, _msg: Message) -> Flow {
            Flow::Done
        }
        fn on_close(_conn: u64, _code: u16, _reason: String) {}
    }

    export!(Future);
}
