//! The `timers` interface (contract 0.2.0): one-shot timers the host holds for a plugin, by
//! key, bounded per plugin (`max_timers`), a day long at most. They fire through the plugin's
//! optional `on-timer` export (see `timer_driver`); a plugin without it may not set any.

use std::time::Duration;

use super::bindings::{ErrorCode, v0_2};
use super::state::StoreState;
use crate::hub::TimerError;

/// Longest key, in bytes, and longest delay.
const MAX_KEY: usize = wasmsock_limits::MAX_TIMER_KEY;
const MAX_DELAY_MS: u32 = wasmsock_limits::MAX_TIMER_DELAY_MS;

impl StoreState {
    pub(super) fn set_timer(&mut self, key: String, delay_ms: u32, conn: Option<u64>) -> Result<(), ErrorCode> {
        let timers = &self.env.hub.timers;
        if !self.serves_timers {
            timers.refused(&self.env.name, "no_export");
            self.log_timer_refusal("the plugin does not export on-timer: rebuild it with the current SDK");
            return Err(ErrorCode::NotPermitted);
        }
        if key.is_empty() || key.len() > MAX_KEY || delay_ms > MAX_DELAY_MS {
            timers.refused(&self.env.name, "invalid");
            return Err(ErrorCode::InvalidArgument);
        }
        let target = conn.map(|id| self.target(id)).transpose()?;
        let due = tokio::time::Instant::now() + Duration::from_millis(u64::from(delay_ms));
        let max = self.env.settings.max_timers;
        match self.env.hub.set_timer(&self.env.name, &key, due, target.as_deref(), max) {
            Ok(()) => Ok(()),
            Err(TimerError::Limit) => {
                self.log_timer_refusal("timer refused: the plugin holds max_timers");
                Err(ErrorCode::LimitReached)
            }
            Err(TimerError::Gone) => Err(ErrorCode::UnknownConnection),
            Err(TimerError::Stopped) => {
                timers.refused(&self.env.name, "stopped");
                Err(ErrorCode::LimitReached)
            }
        }
    }

    pub(super) fn cancel_timer(&mut self, key: String) -> bool {
        self.env.hub.timers.cancel(&self.env.name, &key)
    }

    /// Logs a refusal once per call: a plugin asking for a million timers gets a million
    /// errors, the log one line.
    fn log_timer_refusal(&mut self, why: &str) {
        if std::mem::replace(&mut self.call.timer_refusal_logged, true) {
            return;
        }
        let plugin = &*self.env.name;
        tracing::warn!(
            plugin,
            conn = self.call.conn.as_ref().map(|c| c.id),
            armed = self.env.hub.timers.count(plugin),
            max_timers = self.env.settings.max_timers,
            "{why}"
        );
    }
}

impl v0_2::wasmsock::plugin::timers::Host for StoreState {
    fn set_timer(
        &mut self,
        key: String,
        delay_ms: u32,
        conn: Option<u64>,
    ) -> Result<(), v0_2::wasmsock::plugin::types::ErrorCode> {
        StoreState::set_timer(self, key, delay_ms, conn).map_err(Into::into)
    }

    fn cancel_timer(&mut self, key: String) -> bool {
        StoreState::cancel_timer(self, key)
    }
}
