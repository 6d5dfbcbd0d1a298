//! The `presence` interface (contract 0.2.0): who is in a room, on every live node with a
//! broker (see `broker::room_presence`), on this node without one. Joins and leaves tell whether
//! they are the user's first or last connection in the room, here and everywhere, so a plugin
//! announces a user once however many tabs they open, on however many nodes.

use std::future::Future;

use super::bindings::{ErrorCode, v0_2};
use super::state::StoreState;
use crate::hub::{Census, ConnShared, Hub, JoinError, RoomKey, UserConns};

use v0_2::wasmsock::plugin::presence as wit;

/// Most identities one page holds (what a plugin asks for beyond is cut).
const MAX_PAGE: u32 = 1000;

/// A join's or leave's meaning, before the other nodes are asked.
enum Local {
    /// Not the user's first (or last) connection here: nor anywhere.
    No,
    /// A connection without an identity: always its own first and last.
    Anonymous,
    /// The user's first (or last) connection here: the other nodes decide for everywhere.
    Ask(RoomKey, String),
}

impl Local {
    /// What a membership change of `conn` means, `edge` being its identity's connections in
    /// the room here that make it the first (1, after a join) or last (0, after a leave). The
    /// other nodes are told of the change: in the same step as they are asked when it is an
    /// edge (so the number must not reach them before), with the next write otherwise.
    fn of(hub: &Hub, key: RoomKey, conn: &ConnShared, after: UserConns, edge: usize) -> Local {
        let identity = conn.identity();
        match (after, identity) {
            (Some(n), Some(i)) if n == edge => Local::Ask(key, i.id.clone()),
            (_, identity) => {
                hub.room_changed(&key, identity.as_deref());
                if identity.is_none() { Local::Anonymous } else { Local::No }
            }
        }
    }

    async fn decide(self, hub: &Hub) -> wit::Change {
        match self {
            Local::No => wit::Change { here: false, everywhere: Some(false) },
            Local::Anonymous => wit::Change { here: true, everywhere: Some(true) },
            Local::Ask(key, user) => {
                let elsewhere = hub.room_user_elsewhere(&key, &user).await;
                wit::Change { here: true, everywhere: elsewhere.map(|n| n == 0) }
            }
        }
    }
}

fn census(c: Census, cluster: bool) -> wit::Census {
    let n = |v: usize| v.min(u32::MAX as usize) as u32;
    wit::Census { connections: n(c.connections), users: n(c.users), anonymous: n(c.anonymous), cluster }
}

impl StoreState {
    fn presence_join(
        &mut self,
        conn: u64,
        room: String,
    ) -> impl Future<Output = Result<wit::Change, ErrorCode>> + 'static {
        let hub = self.env.hub.clone();
        let joined = self.room(&room).and_then(|key| {
            let target = self.target(conn)?;
            let max = self.env.host_limits.max_rooms_per_connection;
            match self.env.hub.join_counted(&target, key.clone(), max) {
                Ok(None) => Ok(Local::No),
                Ok(Some(after)) => Ok(Local::of(&self.env.hub, key, &target, after, 1)),
                Err(JoinError::Gone) => Err(ErrorCode::UnknownConnection),
                Err(JoinError::Limit) => Err(ErrorCode::LimitReached),
                Err(JoinError::HostMemoryFull) => Err(self.host_memory_full()),
            }
        });
        async move { Ok(joined?.decide(&hub).await) }
    }

    fn presence_leave(&mut self, conn: u64, room: String) -> impl Future<Output = Option<wit::Change>> + 'static {
        let hub = self.env.hub.clone();
        let left = match (self.room(&room), self.target(conn)) {
            (Ok(key), Ok(target)) => {
                let after = self.env.hub.leave_counted(&target, &key);
                after.map(|after| Local::of(&self.env.hub, key, &target, after, 0))
            }
            _ => None,
        };
        async move { Some(left?.decide(&hub).await) }
    }

    fn presence_census(&mut self, room: String) -> impl Future<Output = wit::Census> + 'static {
        let hub = self.env.hub.clone();
        let key = self.room(&room).ok();
        async move {
            let Some(key) = key else { return census(Census::default(), true) };
            match hub.room_census_everywhere(&key).await {
                Some(c) => census(c, true),
                None => census(hub.rooms.census(&key), false),
            }
        }
    }

    fn presence_users(
        &mut self,
        room: String,
        after: Option<String>,
        limit: u32,
    ) -> impl Future<Output = wit::UserPage> + 'static {
        let hub = self.env.hub.clone();
        let key = self.room(&room).ok();
        let limit = limit.min(MAX_PAGE) as usize;
        async move {
            let Some(key) = key.filter(|_| limit > 0) else {
                return wit::UserPage { users: Vec::new(), next: None, cluster: true };
            };
            // One more than asked: whether there is a next page.
            let (mut users, cluster) = match hub.room_users_everywhere(&key, after.clone(), limit + 1).await {
                Some(u) => (u, true),
                None => (hub.rooms.users(&key, after.as_deref(), limit + 1), false),
            };
            let next = (users.len() > limit).then(|| {
                users.truncate(limit);
                users.last().cloned().unwrap_or_default()
            });
            wit::UserPage { users, next, cluster }
        }
    }
}

impl wit::Host for StoreState {
    async fn join(&mut self, conn: u64, room: String) -> Result<wit::Change, v0_2::wasmsock::plugin::types::ErrorCode> {
        StoreState::presence_join(self, conn, room).await.map_err(Into::into)
    }

    async fn leave(&mut self, conn: u64, room: String) -> Option<wit::Change> {
        StoreState::presence_leave(self, conn, room).await
    }

    async fn count(&mut self, room: String) -> wit::Census {
        StoreState::presence_census(self, room).await
    }

    async fn users(&mut self, room: String, after: Option<String>, limit: u32) -> wit::UserPage {
        StoreState::presence_users(self, room, after, limit).await
    }
}
