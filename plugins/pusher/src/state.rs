//! A connection's protocol state, kept by the host as the connection's attachment (JSON), since
//! the plugin keeps nothing between calls: the app, the channels it subscribed to (with its
//! presence member on presence channels) and the user it signed in as.
//!
//! Bounded by the host: `[host] max_attachment` (16 KiB by default) bounds the JSON, and
//! `[host] max_rooms_per_connection` the channels (each channel is a room).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmsock_sdk::Conn;

/// A presence channel's member as the protocol lists it (`presence::Member`; kept here, with
/// the state that holds it, so that `presence` depends on `state` and not both ways).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub user_info: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The app's id.
    pub app: String,
    /// Subscribed channels; the member this connection is on presence channels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, Option<Member>>,
    /// When this connection joined each of its presence channels: a number from a counter
    /// shared by the plugin's instances, so that of two connections of one user joining at
    /// once, the later one knows it is later (see `presence::joined_before`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub joined: BTreeMap<String, u64>,
    /// The user this connection signed in as (`pusher:signin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl State {
    pub fn new(app: &str) -> State {
        State { app: app.to_owned(), ..State::default() }
    }

    /// The connection's state; `None` for a connection this plugin refused (or not its own).
    pub fn load(conn: Conn) -> Option<State> {
        conn.attachment_json().ok().flatten()
    }

    pub fn save(&self, conn: Conn) -> Result<(), wasmsock_sdk::Error> {
        conn.set_attachment_json(self)
    }

    /// The member this connection is on `channel`, if it is subscribed to it as a presence member.
    pub fn member(&self, channel: &str) -> Option<&Member> {
        self.channels.get(channel).and_then(Option::as_ref)
    }
}
