//! The other nodes, as the hub sees them: a hook that takes this node's room publishes and
//! key/value writes to them. The hub calls it after the local delivery or write, and knows
//! nothing of how it gets there (the broker installs it, through Redis); a node alone has none.

use std::sync::Arc;

use bytes::Bytes;

use super::RoomKey;
use crate::hub::Outgoing;

pub(crate) trait Peers: Send + Sync {
    /// Takes a room publish to the other nodes (the members on this node already have it).
    fn publish(&self, key: &RoomKey, item: &Outgoing);

    /// Applies a key/value write on this node with `local`, which returns whether it changed
    /// anything, and shares a change with the other nodes (`value` `None` is a delete). The
    /// write itself is this node's: `local` runs exactly once, whether or not it is shared.
    fn kv_write(&self, plugin: &Arc<str>, key: &str, value: Option<Bytes>, local: &mut dyn FnMut() -> bool);
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;
    use crate::hub::{Allowance, Hub, KvError, KvLimits};

    /// Records what reaches the other nodes, and applies the local writes as a broker does.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Peers for Recorder {
        fn publish(&self, key: &RoomKey, _item: &Outgoing) {
            self.0.lock().push(format!("publish {}", key.name));
        }

        fn kv_write(&self, _plugin: &Arc<str>, key: &str, value: Option<Bytes>, local: &mut dyn FnMut() -> bool) {
            let changed = local();
            let op = if value.is_some() { "set" } else { "delete" };
            self.0.lock().push(format!("{op} {key} changed={changed}"));
        }
    }

    #[test]
    fn the_hub_hands_each_publish_and_key_value_write_to_its_peers_once() {
        let hub = Hub::new(KvLimits { max_key: 8, max_value: 8, max_keys: 8 }, 1 << 20, Arc::default());
        let plugin: Arc<str> = Arc::from("p");
        assert_eq!(hub.kv_set(&plugin, "alone", Bytes::from_static(b"v")), Ok(()), "a node alone writes locally");
        let peers = Arc::new(Recorder::default());
        hub.set_peers(peers.clone()).unwrap();
        assert!(hub.set_peers(peers.clone()).is_err(), "installed once");

        let hi = Outgoing::Text(Bytes::from_static(b"hi"));
        let delivery = hub.publish(&RoomKey::new(&plugin, "lobby"), &hi, None, Allowance::UNLIMITED);
        assert_eq!(delivery.map(|d| d.queued), Ok(0), "no local members");
        assert_eq!(hub.kv_set(&plugin, "k", Bytes::from_static(b"v")), Ok(()));
        assert_eq!(hub.kv.get("p", "k").as_deref(), Some(&b"v"[..]));
        assert_eq!(hub.kv_set(&plugin, "", Bytes::new()), Err(KvError::InvalidKey));
        assert!(hub.kv_delete(&plugin, "k"));
        assert!(!hub.kv_delete(&plugin, "k"));
        assert_eq!(
            *peers.0.lock(),
            [
                "publish lobby",
                "set k changed=true",
                "set  changed=false",
                "delete k changed=true",
                "delete k changed=false"
            ]
        );
        assert_eq!(hub.metrics.publishes.get(), 1);
    }
}
