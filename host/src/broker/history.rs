//! Room history kept in Redis, so every node has the same history in the same order.
//!
//! A room's history is a stream, `<prefix>:h:<plugin>:<room>`, whose entry ids are the offsets
//! (`<offset>-0`), and a hash, `<prefix>:hm:<plugin>:<room>`, with its epoch (`e`) and last
//! offset (`s`). A publish is one script: it draws the next offset, appends the template
//! (trimmed to the room's `size`), renews both keys' expiry (the room's `ttl`) and publishes a
//! frame carrying the offset and epoch on the rooms channel, all in one atomic step; every node,
//! the publisher's included, completes the template and delivers it from its subscription, so
//! members everywhere get a room's publishes in offset order. A hash that is gone (a Redis
//! restarted without persistence, or a room idle past its ttl) is made again with the epoch the
//! caller drew, and the stream emptied: clients from the old epoch are told they missed
//! something. Entries older than the ttl are skipped when read (the stream expires whole).
//!
//! A read can send a probe on the rooms channel in the same step (see `hub::history_cluster`):
//! the subscriber, meeting this node's probe, seeds the room's mirror and wakes the read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::link::Link;
use super::scripts::{Script, ScriptConn, ScriptError};
use super::wire::{Channels, Frame, KIND_HISTORY_BINARY, KIND_HISTORY_PROBE, KIND_HISTORY_TEXT};
use crate::hub::{Bounds, Hub, Outgoing, Position, Remote, RoomKey, SharedFuture, SharedHistory, Unreachable};

/// How long a history call waits for Redis, and a recovering join for its probe: far above a
/// round trip; past it the node answers from its own history.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Makes the room's hash (and empties its stream) when it is gone. KEYS: hash, stream. ARGV[1]:
/// the epoch to make it with.
const EPOCH: &str = "redis.replicate_commands() \
    local e = redis.call('HGET', KEYS[1], 'e') \
    if not e then e = ARGV[1] redis.call('DEL', KEYS[2]) redis.call('HSET', KEYS[1], 'e', e, 's', 0) end \
    local t = redis.call('TIME') \
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

/// KEYS: hash, stream. ARGV: epoch, size, ttl (ms), field ('x' text, 'b' binary), template,
/// channel, frame head, except. Returns the offset and the epoch.
const PUBLISH: &str = "local top = redis.call('HINCRBY', KEYS[1], 's', 1) \
    local o = string.format('%.0f', top) \
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], o .. '-0', ARGV[4], ARGV[5], 't', string.format('%.0f', now)) \
    redis.call('PEXPIRE', KEYS[2], ARGV[3]) \
    redis.call('PEXPIRE', KEYS[1], ARGV[3]) \
    redis.call('PUBLISH', ARGV[6], ARGV[7] .. o .. '\\n' .. e .. '\\n' .. ARGV[8] .. '\\n' .. ARGV[5]) \
    return {top, e}";

/// KEYS: hash, stream. ARGV: epoch, ttl (ms), first id ('-': the oldest), count, channel
/// ('': no probe), probe frame head. Returns the epoch, the top offset and, flat, each entry's
/// id, field and template.
const READ: &str = "redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
    local top = tonumber(redis.call('HGET', KEYS[1], 's')) \
    local out = {} \
    if tonumber(ARGV[4]) > 0 then \
      local oldest = now - tonumber(ARGV[2]) \
      for _, x in ipairs(redis.call('XRANGE', KEYS[2], ARGV[3], '+', 'COUNT', ARGV[4])) do \
        local f = x[2] \
        if tonumber(f[4]) >= oldest then table.insert(out, x[1]) table.insert(out, f[1]) table.insert(out, f[2]) end \
      end \
    end \
    if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6] .. string.format('%.0f', top) .. '\\n' .. e) end \
    return {e, top, out}";

/// KEYS: hash, stream. Forgets the room's history: the next publish or read draws a new epoch.
const FORGET: &str = "return redis.call('DEL', KEYS[1], KEYS[2])";

pub(super) struct RedisHistory {
    scripts: ScriptConn,
    publish: Script,
    read: Script,
    forget: Script,
    ch: Channels,
    prefix: String,
    node: u64,
    link: Arc<Link>,
    /// Recovering joins waiting for their probe, by probe number.
    probes: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_probe: AtomicU64,
    /// The hub holds this (through its peers): a weak link, no cycle.
    hub: Weak<Hub>,
}

impl RedisHistory {
    pub fn new(
        client: super::client::Redis,
        ch: Channels,
        prefix: &str,
        node: u64,
        link: Arc<Link>,
        hub: Weak<Hub>,
    ) -> RedisHistory {
        RedisHistory {
            scripts: ScriptConn::new(client, TIMEOUT),
            publish: Script::new(format!("{EPOCH}{PUBLISH}")),
            read: Script::new(format!("{EPOCH}{READ}")),
            forget: Script::new(FORGET.to_owned()),
            ch,
            prefix: prefix.to_owned(),
            node,
            link,
            probes: Mutex::default(),
            next_probe: AtomicU64::new(1),
            hub,
        }
    }

    fn keys(&self, key: &RoomKey) -> (Vec<u8>, Vec<u8>) {
        let room = format!("{}:{}", key.plugin, key.name);
        (format!("{}:hm:{room}", self.prefix).into_bytes(), format!("{}:h:{room}", self.prefix).into_bytes())
    }

    /// This node's probe `n` passed its subscription (the mirror is seeded already).
    pub fn probe_passed(&self, n: u64) {
        if let Some(tx) = self.probes.lock().remove(&n) {
            let _ = tx.send(());
        }
    }

    /// Ends the epoch of the rooms this node published to with offsets of its own while Redis
    /// was out of reach: the shared history lacks those publishes, so a client's position in it
    /// can no longer vouch for what the client has. Run before the node counts Redis as back.
    /// Returns whether every room was dealt with.
    pub async fn forget_diverged(&self, hub: &Hub) -> bool {
        let rooms = hub.history.take_diverged();
        for (i, key) in rooms.iter().enumerate() {
            let (hash, stream) = self.keys(key);
            if let Err(e) = self.scripts.run::<u64>(&self.forget, &[&hash, &stream], &[]).await {
                refused(key, e);
                hub.history.mark_diverged(&rooms[i..]);
                return false;
            }
        }
        if !rooms.is_empty() {
            tracing::info!(rooms = rooms.len(), "broker: rooms published to while Redis was away start a new epoch");
        }
        true
    }

    async fn publish(
        self: Arc<Self>,
        key: RoomKey,
        bounds: Bounds,
        template: Outgoing,
        except: Option<u64>,
    ) -> Result<Position, Unreachable> {
        let (text, payload) = match &template {
            Outgoing::Text(b) => (true, b.clone()),
            Outgoing::Binary(b) => (false, b.clone()),
            _ => return Err(Unreachable),
        };
        let (hash, stream) = self.keys(&key);
        let kind = if text { KIND_HISTORY_TEXT } else { KIND_HISTORY_BINARY };
        let head = Frame::encode(self.node, 0, kind, &key.plugin, &key.name, b"");
        let epoch = crate::hub::new_epoch();
        let (size, ttl) = (bounds.size.max(1).to_string(), ttl_ms(bounds.ttl));
        let except = except.map(|c| c.to_string()).unwrap_or_default();
        let args: [&[u8]; 8] = [
            epoch.as_bytes(),
            size.as_bytes(),
            ttl.as_bytes(),
            if text { b"x" } else { b"b" },
            &payload,
            self.ch.rooms.as_bytes(),
            &head,
            except.as_bytes(),
        ];
        let (offset, epoch): (u64, String) =
            self.scripts.run(&self.publish, &[&hash, &stream], &args).await.map_err(|e| {
                refused(&key, e);
                Unreachable
            })?;
        Ok(Position { offset, epoch: Arc::from(epoch) })
    }

    async fn read(
        self: Arc<Self>,
        key: RoomKey,
        bounds: Bounds,
        after: Option<u64>,
        limit: usize,
        probe: bool,
    ) -> Result<Remote, Unreachable> {
        let (hash, stream) = self.keys(&key);
        let epoch = crate::hub::new_epoch();
        let first = after.map_or_else(|| "-".to_owned(), |a| format!("{}-0", a.saturating_add(1)));
        let (ttl, count) = (ttl_ms(bounds.ttl), limit.to_string());
        let waiting = probe.then(|| {
            let n = self.next_probe.fetch_add(1, Relaxed);
            let (tx, rx) = oneshot::channel();
            self.probes.lock().insert(n, tx);
            (n, rx)
        });
        let head = waiting
            .as_ref()
            .map(|(n, _)| Frame::encode(self.node, *n, KIND_HISTORY_PROBE, &key.plugin, &key.name, b""))
            .unwrap_or_default();
        let channel: &[u8] = if probe { self.ch.rooms.as_bytes() } else { b"" };
        let args: [&[u8]; 6] = [epoch.as_bytes(), ttl.as_bytes(), first.as_bytes(), count.as_bytes(), channel, &head];
        let answer = self.scripts.run::<redis::Value>(&self.read, &[&hash, &stream], &args).await;
        let remote = answer.map_err(|e| refused(&key, e)).ok().and_then(remote);
        let Some(remote) = remote else {
            if let Some((n, _)) = waiting {
                self.probes.lock().remove(&n);
            }
            return Err(Unreachable);
        };
        if let Some((n, rx)) = waiting
            && !matches!(tokio::time::timeout(TIMEOUT, rx).await, Ok(Ok(())))
        {
            self.probes.lock().remove(&n);
            tracing::warn!(room = &*key.name, "broker: a history probe did not come back in time");
            return Err(Unreachable);
        }
        Ok(remote)
    }
}

impl SharedHistory for Arc<RedisHistory> {
    fn up(&self) -> bool {
        self.link.up() && self.hub.strong_count() > 0
    }

    fn publish(&self, key: RoomKey, bounds: Bounds, template: Outgoing, except: Option<u64>) -> SharedFuture<Position> {
        Box::pin(self.clone().publish(key, bounds, template, except))
    }

    fn read(
        &self,
        key: RoomKey,
        bounds: Bounds,
        after: Option<u64>,
        limit: usize,
        probe: bool,
    ) -> SharedFuture<Remote> {
        Box::pin(self.clone().read(key, bounds, after, limit, probe))
    }
}

fn ttl_ms(ttl: Duration) -> String {
    ttl.as_millis().clamp(1, i64::MAX as u128).to_string()
}

fn refused(key: &RoomKey, e: ScriptError) {
    if let ScriptError::Refused(e) = e {
        tracing::warn!(room = &*key.name, error = %e, "broker: Redis refused a history script");
    }
}

/// The read script's answer: epoch, top, and flat (id, field, template) triples.
fn remote(v: redis::Value) -> Option<Remote> {
    use redis::Value as V;
    let V::Array(parts) = v else { return None };
    let [V::BulkString(epoch), V::Int(top), V::Array(flat)] = <[V; 3]>::try_from(parts).ok()? else { return None };
    let mut entries = Vec::with_capacity(flat.len() / 3);
    for e in flat.chunks_exact(3) {
        let (V::BulkString(id), V::BulkString(field), V::BulkString(data)) = (&e[0], &e[1], &e[2]) else {
            return None;
        };
        let offset = std::str::from_utf8(id).ok()?.split('-').next()?.parse().ok()?;
        let data = Bytes::copy_from_slice(data);
        entries.push((offset, if field == b"b" { Outgoing::Binary(data) } else { Outgoing::Text(data) }));
    }
    Some(Remote { epoch: Arc::from(String::from_utf8(epoch).ok()?), top: u64::try_from(top).ok()?, entries })
}

/// A history frame's payload: `<offset>\n<epoch>\n<except>\n<template>`.
pub(super) struct Published<'a> {
    pub offset: u64,
    pub epoch: &'a str,
    pub except: Option<u64>,
    pub template: &'a [u8],
}

impl<'a> Published<'a> {
    pub fn parse(payload: &'a [u8]) -> Option<Published<'a>> {
        let mut parts = payload.splitn(4, |&b| b == b'\n');
        let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let epoch = std::str::from_utf8(parts.next()?).ok()?;
        let except = std::str::from_utf8(parts.next()?).ok()?;
        let except = if except.is_empty() { None } else { Some(except.parse().ok()?) };
        Some(Published { offset, epoch, except, template: parts.next()? })
    }
}

/// A probe frame's payload: `<top>\n<epoch>`.
pub(super) fn parse_probe(payload: &[u8]) -> Option<(u64, &str)> {
    let s = std::str::from_utf8(payload).ok()?;
    let (top, epoch) = s.split_once('\n')?;
    Some((top.parse().ok()?, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_offset_epoch_exception_and_template() {
        let p = Published::parse(b"42\nab12\n7\n{\"o\":\x01o}\nmore").expect("parses");
        assert_eq!((p.offset, p.epoch, p.except, p.template), (42, "ab12", Some(7), &b"{\"o\":\x01o}\nmore"[..]));
        let p = Published::parse(b"1\ne\n\nx").expect("no exception");
        assert_eq!(p.except, None);
        assert!(Published::parse(b"x\ne\n\nx").is_none());
        assert!(Published::parse(b"1\ne").is_none());
        assert_eq!(parse_probe(b"9\nab"), Some((9, "ab")));
        assert_eq!(parse_probe(b"9ab"), None);
    }

    #[test]
    fn read_answers_become_entries_and_garbage_none() {
        use redis::Value as V;
        let s = |b: &[u8]| V::BulkString(b.to_vec());
        let flat = V::Array(vec![s(b"3-0"), s(b"x"), s(b"a"), s(b"4-0"), s(b"b"), s(b"\x00")]);
        let r = remote(V::Array(vec![s(b"ep"), V::Int(4), flat])).expect("parses");
        assert_eq!((&*r.epoch, r.top, r.entries.len()), ("ep", 4, 2));
        assert!(matches!(&r.entries[0], (3, Outgoing::Text(b)) if &b[..] == b"a"));
        assert!(matches!(&r.entries[1], (4, Outgoing::Binary(_))));
        assert!(remote(V::Array(vec![s(b"ep"), V::Int(-1), V::Array(vec![])])).is_none());
        assert!(remote(V::Int(1)).is_none());
    }
}
