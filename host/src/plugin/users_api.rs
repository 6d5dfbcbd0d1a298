//! The `users` interface (contract 0.2.0): reach every connection of an identity, on this node
//! and, with a broker, on every node. A plugin reaches the users of the routes it serves, or
//! of its `act_as` plugin's routes; sends are charged to the call's budget like a publish.

use super::bindings::{ErrorCode, Message, v0_2};
use super::host_api::{close_args, message_len, outgoing};
use super::state::StoreState;

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
        let item = outgoing(msg);
        self.fan_out(len, &user, |env, allowance| env.hub.user_send(&env.scope, &user, &item, allowance))
    }

    pub(super) fn close_user(&mut self, user: String, code: u16, reason: String) -> Result<u32, ErrorCode> {
        Self::user_id(&user)?;
        let code = close_args(code, &reason)?;
        Ok(self.env.hub.user_close(&self.env.scope, &user, code, &reason))
    }

    pub(super) fn user_connections(&mut self, user: String) -> u32 {
        self.env.hub.users.count(&user, &self.env.scope) as u32
    }

    /// Waits for the broker when there is one; holds nothing of the store meanwhile.
    pub(super) fn user_connections_everywhere(
        &mut self,
        user: String,
    ) -> impl Future<Output = Option<u32>> + Send + 'static {
        let (hub, scope) = (self.env.hub.clone(), self.env.scope.clone());
        async move {
            if Self::user_id(&user).is_err() {
                return Some(0);
            }
            hub.user_count_everywhere(&scope, &user).await.map(|n| n.min(u32::MAX as usize) as u32)
        }
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

    async fn user_connections_everywhere(&mut self, user: String) -> Option<u32> {
        StoreState::user_connections_everywhere(self, user).await
    }
}
