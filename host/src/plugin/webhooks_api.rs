//! The `webhooks` interface (contract 0.2.0): `emit` queues an event with the plugin's
//! webhooks (see `webhooks`) and returns at once.

use super::bindings::{ErrorCode, v0_2};
use super::state::StoreState;
use super::webhooks::{EmitError, Signing};

impl v0_2::wasmsock::plugin::webhooks::Host for StoreState {
    fn emit(
        &mut self,
        url: String,
        event: String,
        signing: Option<v0_2::wasmsock::plugin::webhooks::Signing>,
    ) -> Result<(), v0_2::wasmsock::plugin::types::ErrorCode> {
        let signing = signing.map(|s| Signing { secret: s.secret, header: s.header, headers: s.headers });
        let code = match self.env.webhooks.emit(url, event, signing) {
            Ok(()) => return Ok(()),
            Err(EmitError::Denied) => ErrorCode::NotPermitted,
            Err(EmitError::Invalid(why)) => {
                tracing::debug!(plugin = &*self.env.name, "webhook refused: {why}");
                ErrorCode::InvalidArgument
            }
            Err(EmitError::TooLarge) => ErrorCode::TooLarge,
            Err(EmitError::QueueFull | EmitError::Stopped) => ErrorCode::QueueFull,
        };
        Err(code.into())
    }
}
