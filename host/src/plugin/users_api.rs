//! The `users` interface (contract 0.2.0): reach every connection of an identity, on this node
//! and, with a broker, on every node. A plugin reaches the users of the routes it serves, or
//! of its `act_as` plugin's routes; sends are charged to the call's budget like a publish.

use super::bindings::{ErrorCode, Message, v0_2};
use super::host_api::{message_len, outgoing};
use super::state::StoreState;
use crate::ws::CloseCode;

/// Longest user id accepted (identities are set by plugins, and this bounds what a frame to
/// the other nodes carries).
const MAX_USER_ID: usize = 1024;

impl StoreState {
    fn user_id(user: &str) -> Result<(), ErrorCode> {
        if user.is_empty() || user.len() > MAX_USER_ID {
            return Err(ErrorCode::InvalidArgument);
        }
        Ok(())
    }

    pub(super) fn send_to_user(&mut self, user: String, msg: Message) -> Result<u32, ErrorCode> {
        Self::user_id(&user)?;
        let len = message_len(&msg);
        if !self.allowance().covers(1, len) {
            return Err(ErrorCode::LimitReached);
        }
        let hub = self.env.hub.clone();
        let d = hub.user_send(&self.env.scope, &user, &outgoing(msg), self.allowance()).map_err(|over| {
            tracing::debug!(plugin = &*self.env.name, user = %user, conns = over.members, "send-to-user over the call's send budget");
            ErrorCode::LimitReached
        })?;
        self.charge_copies(d.queued.max(1), len);
        if d.queued == 0 && d.too_large > 0 {
            return Err(ErrorCode::TooLarge);
        }
        Ok(d.queued)
    }

    pub(super) fn close_user(&mut self, user: String, code: u16, reason: String) -> Result<u32, ErrorCode> {
        Self::user_id(&user)?;
        let code = CloseCode::from_wire(code).ok_or(ErrorCode::InvalidArgument)?;
        if reason.len() > 123 {
            return Err(ErrorCode::InvalidArgument);
        }
        Ok(self.env.hub.user_close(&self.env.scope, &user, code, &reason))
    }

    pub(super) fn user_connections(&mut self, user: String) -> u32 {
        self.env.hub.users.count(&user, &self.env.scope) as u32
    }
}

impl v0_2::wasmsock::plugin::users::Host for StoreState {
    fn send_to_user(
        &mut self,
        user: String,
        msg: v0_2::wasmsock::plugin::types::Message,
    ) -> Result<u32, v0_2::wasmsock::plugin::types::ErrorCode> {
        StoreState::send_to_user(self, user, msg.into()).map_err(Into::into)
    }

    fn close_user(
        &mut self,
        user: String,
        code: u16,
        reason: String,
    ) -> Result<u32, v0_2::wasmsock::plugin::types::ErrorCode> {
        StoreState::close_user(self, user, code, reason).map_err(Into::into)
    }

    fn user_connections(&mut self, user: String) -> u32 {
        StoreState::user_connections(self, user)
    }
}
