//! What nodes say to each other through Redis: the channel and key names under the cluster's
//! prefix, and the frame every message travels in. A node that cannot read a frame (another
//! version, or garbage) ignores it; nothing here knows about connections or queues.

use anyhow::{Result, bail};

/// The frame format's version; a node ignores frames of another.
const VERSION: u8 = 2;
pub(super) const KIND_TEXT: u8 = 1;
pub(super) const KIND_BINARY: u8 = 2;
pub(super) const KIND_KV_SET: u8 = 3;
pub(super) const KIND_KV_DELETE: u8 = 4;
/// To every connection of a user (`name` is the user id): a text or binary message, or a close
/// (payload: the close code, big-endian u16, then the reason).
pub(super) const KIND_USER_TEXT: u8 = 5;
pub(super) const KIND_USER_BINARY: u8 = 6;
pub(super) const KIND_USER_CLOSE: u8 = 7;
/// A publish to a room whose history Redis keeps, sent by Redis's script (see `history`): the
/// payload is `<offset>\n<epoch>\n<except>\n<template>`; every node delivers it, the
/// publisher's included.
pub(super) const KIND_HISTORY_TEXT: u8 = 8;
pub(super) const KIND_HISTORY_BINARY: u8 = 9;
/// A history read's probe (`seq` numbers it on its node): payload `<top>\n<epoch>`.
pub(super) const KIND_HISTORY_PROBE: u8 = 10;

/// The names a cluster uses in Redis, all under its prefix.
#[derive(Clone)]
pub(super) struct Channels {
    /// The pub/sub channel of room publishes.
    pub rooms: String,
    /// The pub/sub channel of shared key/value writes.
    pub kv: String,
    /// What a plugin's name follows in the name of the hash that holds its shared store.
    pub kv_prefix: String,
}

impl Channels {
    pub fn new(prefix: &str) -> Channels {
        Channels { rooms: format!("{prefix}:rooms"), kv: format!("{prefix}:kv"), kv_prefix: format!("{prefix}:kv:") }
    }
}

/// `[version][node u64][seq u64][kind][plugin len u16][plugin][name len u16][name][payload]`
///
/// `node` is the sending node's id and `seq` its sequence number (so a frame sent again is
/// recognised); `name` is the room, or the key of a key/value write.
pub(super) struct Frame<'a> {
    pub node: u64,
    pub seq: u64,
    pub kind: u8,
    pub plugin: &'a str,
    pub name: &'a str,
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn encode(node: u64, seq: u64, kind: u8, plugin: &str, name: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(22 + plugin.len() + name.len() + payload.len());
        out.push(VERSION);
        out.extend_from_slice(&node.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.push(kind);
        for s in [plugin, name] {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    pub fn decode(b: &'a [u8]) -> Result<Frame<'a>> {
        let take = |b: &'a [u8], n: usize| -> Result<(&'a [u8], &'a [u8])> {
            if b.len() < n {
                bail!("truncated broker message");
            }
            Ok(b.split_at(n))
        };
        let (head, rest) = take(b, 18)?;
        if head[0] != VERSION {
            bail!("broker message version {} (this node speaks {VERSION})", head[0]);
        }
        let node = u64::from_be_bytes(head[1..9].try_into()?);
        let seq = u64::from_be_bytes(head[9..17].try_into()?);
        let kind = head[17];
        let mut rest = rest;
        let mut strings = [""; 2];
        for s in &mut strings {
            let (len, r) = take(rest, 2)?;
            let (bytes, r) = take(r, u16::from_be_bytes([len[0], len[1]]) as usize)?;
            *s = std::str::from_utf8(bytes)?;
            rest = r;
        }
        Ok(Frame { node, seq, kind, plugin: strings[0], name: strings[1], payload: rest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let bytes = Frame::encode(7, 42, KIND_TEXT, "rooms", "lobby", b"hello");
        let f = Frame::decode(&bytes).unwrap();
        assert_eq!(
            (f.node, f.seq, f.kind, f.plugin, f.name, f.payload),
            (7, 42, KIND_TEXT, "rooms", "lobby", &b"hello"[..])
        );
        assert!(Frame::decode(&bytes[..20]).is_err());
        assert!(Frame::decode(b"").is_err());
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(Frame::decode(&wrong).is_err());
    }
}
