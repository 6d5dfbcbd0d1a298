//! The `history` interface (contract 0.2.0): publishes kept per room with a position, reads
//! after a position, and joins that replay what a client missed (see `hub::history`). Rooms
//! are the plugin's (its `act_as` plugin's) like `host.publish`'s; a room no `[[history]]` rule
//! names answers `not-permitted`.

use super::bindings::{ErrorCode, Message, v0_2};
use super::host_api::{message_len, outgoing};
use super::state::StoreState;
use crate::hub::{HistoryError, JoinError, Joining, Outgoing, Page, Position, Recovery};

use v0_2::wasmsock::plugin::history as wit;
use v0_2::wasmsock::plugin::types::{ErrorCode as WitErrorCode, Message as WitMessage};

impl StoreState {
    fn history_error(&self, e: HistoryError) -> ErrorCode {
        match e {
            HistoryError::NoHistory => ErrorCode::NotPermitted,
            HistoryError::Full | HistoryError::Join(JoinError::HostMemoryFull) => ErrorCode::HostMemoryFull,
            HistoryError::TooLarge => ErrorCode::TooLarge,
            HistoryError::OverBudget(over) => {
                tracing::debug!(plugin = &*self.env.name, conns = over.members, "publish over the call's send budget");
                ErrorCode::LimitReached
            }
            HistoryError::Join(JoinError::Gone) => ErrorCode::UnknownConnection,
            HistoryError::Join(JoinError::Limit) => ErrorCode::LimitReached,
        }
    }

    /// Charged like `host.publish`: one send per member it is queued to on this node, at
    /// least one.
    pub(super) async fn history_publish(
        &mut self,
        room: String,
        msg: Message,
        except: Option<u64>,
    ) -> Result<(u32, Position), ErrorCode> {
        let key = self.room(&room)?;
        let len = message_len(&msg);
        if !self.allowance().covers(1, len) {
            return Err(ErrorCode::LimitReached);
        }
        let (allowance, hub) = (self.allowance(), self.env.hub.clone());
        let (queued, position) =
            hub.history_publish(&key, outgoing(msg), except, allowance).await.map_err(|e| self.history_error(e))?;
        self.charge_copies(queued.max(1), len);
        Ok((queued, position))
    }

    pub(super) async fn history_read(
        &mut self,
        room: String,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Page, ErrorCode> {
        let key = self.room(&room)?;
        let hub = self.env.hub.clone();
        hub.history_read(&key, after.as_ref(), limit as usize).await.map_err(|e| self.history_error(e))
    }

    pub(super) async fn history_current(&mut self, room: String) -> Result<Position, ErrorCode> {
        let key = self.room(&room)?;
        let hub = self.env.hub.clone();
        hub.history_current(&key).await.map_err(|e| self.history_error(e))
    }

    /// The replayed entries are charged to the call's send budget, one send each.
    pub(super) async fn history_join(
        &mut self,
        conn: u64,
        room: String,
        after: Option<Position>,
    ) -> Result<Recovery, ErrorCode> {
        let key = self.room(&room)?;
        let target = self.target(conn)?;
        let hub = self.env.hub.clone();
        let joining = Joining {
            conn: &target,
            key: &key,
            max_rooms: self.env.host_limits.max_rooms_per_connection,
            allowance: self.allowance(),
        };
        let recovery = hub.history_join(&joining, after.as_ref()).await.map_err(|e| self.history_error(e))?;
        self.call.sends = self.call.sends.saturating_add(recovery.replayed);
        self.call.send_bytes = self.call.send_bytes.saturating_add(recovery.replayed_bytes);
        if after.is_some() && !recovery.recovered {
            tracing::debug!(plugin = &*self.env.name, conn, room, "history: a join could not recover");
        }
        Ok(recovery)
    }
}

fn position(p: Position) -> wit::Position {
    wit::Position { offset: p.offset, epoch: p.epoch.to_string() }
}

fn host_position(p: wit::Position) -> Position {
    Position { offset: p.offset, epoch: p.epoch.into() }
}

/// A kept message as the plugin gets it back.
fn message(item: &Outgoing) -> WitMessage {
    let (text, bytes) = match item {
        Outgoing::Text(b) => (true, b.clone()),
        Outgoing::Binary(b) => (false, b.clone()),
        Outgoing::Shared { text, msg } => (*text, msg.payload.clone()),
        // Only data messages are kept.
        Outgoing::Ping(_) | Outgoing::Pong(_) | Outgoing::Close(..) => (false, bytes::Bytes::new()),
    };
    if text {
        // Kept text came from a plugin's string with ASCII substituted: valid UTF-8.
        WitMessage::Text(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        WitMessage::Binary(bytes.to_vec())
    }
}

impl wit::Host for StoreState {
    async fn publish(
        &mut self,
        room: String,
        msg: WitMessage,
        except: Option<u64>,
    ) -> Result<wit::Published, WitErrorCode> {
        let (queued, p) =
            StoreState::history_publish(self, room, msg.into(), except).await.map_err(WitErrorCode::from)?;
        Ok(wit::Published { queued, position: position(p) })
    }

    async fn read(
        &mut self,
        room: String,
        after: Option<wit::Position>,
        limit: u32,
    ) -> Result<wit::Page, WitErrorCode> {
        let page =
            StoreState::history_read(self, room, after.map(host_position), limit).await.map_err(WitErrorCode::from)?;
        Ok(wit::Page {
            entries: page
                .entries
                .iter()
                .map(|(offset, item)| wit::Entry { offset: *offset, msg: message(item) })
                .collect(),
            complete: page.complete,
            more: page.more,
            top: position(page.top),
        })
    }

    async fn current(&mut self, room: String) -> Result<wit::Position, WitErrorCode> {
        StoreState::history_current(self, room).await.map(position).map_err(WitErrorCode::from)
    }

    async fn join(
        &mut self,
        conn: u64,
        room: String,
        after: Option<wit::Position>,
    ) -> Result<wit::Recovery, WitErrorCode> {
        let r =
            StoreState::history_join(self, conn, room, after.map(host_position)).await.map_err(WitErrorCode::from)?;
        Ok(wit::Recovery { recovered: r.recovered, replayed: r.replayed, top: position(r.top) })
    }
}
