//! Rooms: named sets of connections, scoped per plugin.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use parking_lot::RwLock;

use super::{ConnShared, Outgoing};

const SHARDS: usize = 16;

/// A room: `(plugin, name)`. Rooms of different plugins never mix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKey {
    pub plugin: Arc<str>,
    pub name: Arc<str>,
}

impl RoomKey {
    pub fn new(plugin: &Arc<str>, name: &str) -> Self {
        RoomKey { plugin: plugin.clone(), name: Arc::from(name) }
    }
}

/// A room on this node: its members, ordered by connection id (oldest first), so listing the
/// first few members of a big room costs the few, not a sort of the whole room on every
/// subscribe; and who they are (presence), kept as members come and go so that a join or
/// leave knows at once whether it is the user's first or last connection here.
#[derive(Default)]
struct Members {
    conns: BTreeMap<u64, Arc<ConnShared>>,
    /// Connections per identity, in id order (pages of users).
    users: BTreeMap<Arc<str>, usize>,
    /// Members without an identity.
    anonymous: usize,
}

/// Who is in a room on this node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub connections: usize,
    /// Distinct identities.
    pub users: usize,
    /// Connections without an identity.
    pub anonymous: usize,
}

/// One room member's presence: the identity's connections in the room (on this node) after a
/// join or leave; `None`: the connection has no identity.
pub type UserConns = Option<usize>;

/// A room's presence fields on this node: (identity, or `None` for the anonymous members;
/// connections).
pub type PresenceFields = Vec<(Option<Arc<str>>, usize)>;

pub struct Rooms {
    shards: Vec<RwLock<HashMap<RoomKey, Members>>>,
    hasher: std::collections::hash_map::RandomState,
}

/// The outcome of a publish.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Members the message was queued to.
    pub queued: u32,
    /// Members whose queue refused it (full or closing).
    pub refused: u32,
    /// Members whose route's `max_message_size` is below the message's size.
    pub too_large: u32,
}

impl Delivery {
    /// Queues `item` to each of `conns` whose route admits its size (a room's members, a
    /// user's connections), outside any lock, and has it written.
    pub fn to(conns: impl IntoIterator<Item = Arc<ConnShared>>, item: &Outgoing) -> Delivery {
        let len = item.payload_len();
        let mut d = Delivery::default();
        let mut idle = Vec::new();
        for conn in conns {
            if len > conn.route.limits.max_message_size {
                d.too_large += 1;
                continue;
            }
            match conn.queue(item.clone()) {
                Ok(write) => {
                    d.queued += 1;
                    if write {
                        idle.push(conn);
                    }
                }
                Err(_) => d.refused += 1,
            }
        }
        // Written once everyone has it queued: the first members' writes do not hold up the
        // rest's queueing.
        super::conn::flush_all(idle);
        d
    }
}

/// What one publish may still cost: the copies and bytes left in the publishing call's send
/// budget. Every member is a copy the server encrypts and writes, so a publish is charged like
/// one send per member, not once for the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub copies: u32,
    pub bytes: usize,
}

impl Allowance {
    /// For deliveries no plugin call pays for (publishes other nodes made, already charged there).
    pub const UNLIMITED: Allowance = Allowance { copies: u32::MAX, bytes: usize::MAX };

    /// Whether `members` copies of `len` bytes fit.
    pub fn covers(&self, members: usize, len: usize) -> bool {
        members <= self.copies as usize && members.checked_mul(len).is_some_and(|b| b <= self.bytes)
    }
}

/// A publish refused whole: the room has more members than the allowance covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub members: usize,
}

impl Rooms {
    pub fn new() -> Self {
        Rooms { shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(), hasher: Default::default() }
    }

    fn shard(&self, key: &RoomKey) -> &RwLock<HashMap<RoomKey, Members>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Adds a member; its identity's connections in the room after.
    pub(super) fn insert(&self, key: &RoomKey, conn: &Arc<ConnShared>) -> UserConns {
        let identity = conn.identity();
        let mut shard = self.shard(key).write();
        let room = shard.entry(key.clone()).or_default();
        if room.conns.insert(conn.id, conn.clone()).is_some() {
            return identity.map(|i| room.users.get(i.id.as_str()).copied().unwrap_or(0));
        }
        match identity {
            Some(i) => {
                let n = room.users.entry(Arc::from(i.id.as_str())).or_default();
                *n += 1;
                Some(*n)
            }
            None => {
                room.anonymous += 1;
                None
            }
        }
    }

    /// Removes a member; an emptied room is freed. Its identity's connections in the room after.
    pub(super) fn remove(&self, key: &RoomKey, conn: &ConnShared) -> UserConns {
        let identity = conn.identity();
        let mut shard = self.shard(key).write();
        let Some(room) = shard.get_mut(key) else { return identity.map(|_| 0) };
        let removed = room.conns.remove(&conn.id).is_some();
        let after = match identity {
            Some(i) => {
                let id = i.id.as_str();
                let n = room.users.get(id).copied().unwrap_or(0).saturating_sub(usize::from(removed));
                if n == 0 {
                    room.users.remove(id);
                } else if let Some(c) = room.users.get_mut(id) {
                    *c = n;
                }
                Some(n)
            }
            None => {
                room.anonymous = room.anonymous.saturating_sub(usize::from(removed));
                None
            }
        };
        if room.conns.is_empty() {
            shard.remove(key);
        }
        after
    }

    /// Who is in the room on this node.
    pub fn census(&self, key: &RoomKey) -> Census {
        let shard = self.shard(key).read();
        shard.get(key).map_or_else(Census::default, |r| Census {
            connections: r.conns.len(),
            users: r.users.len(),
            anonymous: r.anonymous,
        })
    }

    /// Up to `limit` identities in the room on this node after `after`, in byte order.
    pub fn users(&self, key: &RoomKey, after: Option<&str>, limit: usize) -> Vec<String> {
        use std::ops::Bound::{Excluded, Unbounded};
        let shard = self.shard(key).read();
        let Some(room) = shard.get(key) else { return Vec::new() };
        let from = after.map_or(Unbounded, |a| Excluded(Arc::<str>::from(a)));
        room.users.range((from, Unbounded)).take(limit).map(|(u, _)| u.to_string()).collect()
    }

    /// `user`'s connections in the room on this node (`None`: anonymous members).
    pub fn user_conns(&self, key: &RoomKey, user: Option<&str>) -> usize {
        let shard = self.shard(key).read();
        let Some(room) = shard.get(key) else { return 0 };
        match user {
            Some(u) => room.users.get(u).copied().unwrap_or(0),
            None => room.anonymous,
        }
    }

    /// Every room with members on this node and its presence: (identity or `None` for the
    /// anonymous members, connections). For a node telling the other nodes everything again.
    pub fn presence(&self) -> Vec<(RoomKey, PresenceFields)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.read();
            for (key, room) in shard.iter() {
                let mut fields: Vec<_> = room.users.iter().map(|(u, n)| (Some(u.clone()), *n)).collect();
                if room.anonymous > 0 {
                    fields.push((None, room.anonymous));
                }
                out.push((key.clone(), fields));
            }
        }
        out
    }

    /// Queues `item` to every member but `except`, or to none when `allowance` does not cover
    /// a copy for each of them (all or nothing, so a refused publish reached nobody). The
    /// payload is shared, not copied, and no plugin runs per receiver. Members are collected
    /// first, so the room's shard is not locked while their queues are (a big room would
    /// otherwise block joins and leaves of every room in the shard for the whole fan-out). A
    /// member whose route does not admit a message this large is refused it, as a send to it
    /// would be.
    pub fn publish(
        &self,
        key: &RoomKey,
        item: &Outgoing,
        except: Option<u64>,
        allowance: Allowance,
    ) -> Result<Delivery, OverBudget> {
        let len = item.payload_len();
        let members: Vec<Arc<ConnShared>> = {
            let shard = self.shard(key).read();
            let Some(members) = shard.get(key) else { return Ok(Delivery::default()) };
            let members = &members.conns;
            let n = members.len() - usize::from(except.is_some_and(|id| members.contains_key(&id)));
            if !allowance.covers(n, len) {
                return Err(OverBudget { members: n });
            }
            members.iter().filter(|(id, _)| Some(**id) != except).map(|(_, c)| c.clone()).collect()
        };
        Ok(Delivery::to(members, item))
    }

    pub fn members(&self, key: &RoomKey, limit: usize) -> Vec<u64> {
        let shard = self.shard(key).read();
        shard.get(key).map(|m| m.conns.keys().take(limit).copied().collect()).unwrap_or_default()
    }

    pub fn count(&self, key: &RoomKey) -> usize {
        self.shard(key).read().get(key).map_or(0, |m| m.conns.len())
    }

    /// (rooms, memberships) across all plugins.
    pub fn totals(&self) -> (usize, usize) {
        let mut rooms = 0;
        let mut members = 0;
        for shard in &self.shards {
            let shard = shard.read();
            rooms += shard.len();
            members += shard.values().map(|m| m.conns.len()).sum::<usize>();
        }
        (rooms, members)
    }
}

impl Default for Rooms {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, max_message_size: &str) -> Arc<ConnShared> {
        let toml = format!(
            "[[routes]]\npath = \"/r\"\nbuiltin = \"echo\"\nlimits = {{ max_message_size = \"{max_message_size}\" }}\n"
        );
        let settings = crate::Settings::from_toml(&toml, &crate::Overrides::default()).expect("settings");
        let addr = "127.0.0.1:9".parse().expect("addr");
        Arc::new(ConnShared::new(id, Arc::new(settings.routes[0].clone()), addr, Default::default()))
    }

    #[test]
    fn a_publish_reaches_each_member_only_within_its_routes_message_limit() {
        let rooms = Rooms::new();
        let key = RoomKey::new(&Arc::from("rooms"), "lobby");
        let (small, big, sender) = (member(1, "1KiB"), member(2, "1MiB"), member(3, "1MiB"));
        for m in [&small, &big, &sender] {
            rooms.insert(&key, m);
        }
        let item = Outgoing::Text(bytes::Bytes::from(vec![b'x'; 4096]));
        let d = rooms.publish(&key, &item, Some(3), Allowance::UNLIMITED);
        assert_eq!(d, Ok(Delivery { queued: 1, refused: 0, too_large: 1 }));
        assert!(!small.has_outgoing() && big.has_outgoing() && !sender.has_outgoing());
    }

    #[test]
    fn a_publish_the_allowance_does_not_cover_for_every_member_reaches_none() {
        let rooms = Rooms::new();
        let key = RoomKey::new(&Arc::from("rooms"), "lobby");
        let members: Vec<_> = (1..=3).map(|id| member(id, "1MiB")).collect();
        for m in &members {
            rooms.insert(&key, m);
        }
        let item = Outgoing::Text(bytes::Bytes::from(vec![b'x'; 100]));
        let copies = |copies, bytes| Allowance { copies, bytes };
        assert_eq!(rooms.publish(&key, &item, None, copies(2, 1000)), Err(OverBudget { members: 3 }));
        assert_eq!(rooms.publish(&key, &item, None, copies(3, 299)), Err(OverBudget { members: 3 }));
        assert!(members.iter().all(|m| !m.has_outgoing()), "a refused publish reached nobody");
        // The sender is not a copy.
        let d = rooms.publish(&key, &item, Some(1), copies(2, 200));
        assert_eq!(d, Ok(Delivery { queued: 2, refused: 0, too_large: 0 }));
    }
}
