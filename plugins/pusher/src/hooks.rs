//! Webhooks to the app's backend, signed as Pusher signs them.
