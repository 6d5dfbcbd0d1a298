//! Room history: the last publishes of the rooms a `[[history]]` rule names, kept in memory so
//! a client that comes back can be given what it missed.
//!
//! Every publish kept gets a position: an offset (+1 per publish in the room) and the room's
//! epoch, a random string drawn when the room's log is created, so it changes whenever the
//! history is lost (a restart, or a log dropped after idling past its `ttl`). A log keeps the
//! entries `floor+1 ..= top` and nothing else: an entry evicted or not kept raises the floor,
//! and a client whose last offset is below it is told it cannot be recovered.
//!
//! With a broker that shares history (see `history_cluster`), Redis gives the offsets and keeps
//! the history every node reads; a node's log then mirrors what its subscription delivered
//! (so a client coming back to the same node recovers without asking Redis), and becomes its
//! own again, with a fresh epoch, when Redis cannot be reached.
//!
//! One lock per room orders everything that touches its log: a publish assigns the offset,
//! completes the message, keeps it and queues it to the members under it, so members see a
//! room's publishes in offset order; a join with recovery joins and queues the entries after
//! the client's offset under it, so every publish is either among those entries or reaches the
//! new member live. Lock order: the logs' map, then a room's log, then the connection's data
//! and the rooms' shards (taken by join and fan-out); nothing takes a log while holding those.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::{Allowance, ConnShared, Delivery, Hub, JoinError, Outgoing, OverBudget, Remote, RoomKey};
use crate::metrics::Metrics;

/// Bytes counted for an entry beyond its payload (the entry, its slot, the shared message).
pub const HISTORY_ENTRY_OVERHEAD: usize = 96;
/// Bytes counted for a room's log beyond its name (the log, its map slot, its epoch).
const LOG_OVERHEAD: usize = 256;
/// Most entries and bytes one read returns (a page: the plugin asks for the next).
pub const MAX_PAGE_ENTRIES: usize = 1000;
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// The byte that starts a marker in a text template; the byte after it says which.
const MARK: u8 = 0x01;

/// A `[[history]]` rule: the rooms it names (a pattern where `*` matches any run of
/// characters), optionally of one plugin only, and their bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRule {
    pub rooms: String,
    pub plugin: Option<String>,
    /// Most entries a room keeps.
    pub size: usize,
    /// Oldest entry a room keeps.
    pub ttl: Duration,
    /// Most bytes (payloads and overhead) a room keeps.
    pub max_bytes: usize,
}

impl HistoryRule {
    fn matches(&self, key: &RoomKey) -> bool {
        self.plugin.as_deref().is_none_or(|p| p == &*key.plugin) && glob(&self.rooms, &key.name)
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (none included)
/// and everything else itself. Linear backtracking on the last star: patterns and names are
/// short (room names are bounded by `max_room_name`).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A place in a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// Where a log's offsets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// This node gives them (a node alone, or one cut off from Redis): the log is the history.
    Own,
    /// Redis gives them; the entries `floor+1 ..= top` are exactly those of the room's history
    /// in Redis, as this node's subscription delivered them.
    Mirror,
    /// A mirror that may have missed deliveries (its subscription broke): it vouches for
    /// nothing until the next delivery or probe.
    Unsynced,
}

struct Entry {
    offset: u64,
    at: Instant,
    /// The completed message, shared: every member and every replay send the same bytes.
    item: Outgoing,
    cost: usize,
}

/// One room's log.
struct Log {
    rule: usize,
    source: Source,
    epoch: Arc<str>,
    /// The last offset given.
    top: u64,
    /// Offsets up to this one are not kept; the entries are exactly `floor+1 ..= top`.
    floor: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The last publish or join (an empty log idle past its rule's ttl is dropped).
    last: Instant,
    /// Dropped from the map by the sweep: whoever locked it before must look it up again.
    dropped: bool,
    /// What the log itself is counted (its overhead and name).
    own_cost: usize,
    /// This node published here with offsets of its own (with a broker: while Redis was out of
    /// reach), which the shared history does not have.
    diverged: bool,
}

impl Log {
    fn position(&self) -> Position {
        Position { offset: self.top, epoch: self.epoch.clone() }
    }

    /// The index of the first entry after `after`, when the log's offsets come from `source`
    /// and nothing between `after` and the entries was lost: same epoch, not in the future,
    /// not below the floor.
    fn resume(&self, after: &Position, source: Source) -> Option<usize> {
        if self.source != source || *after.epoch != *self.epoch || after.offset > self.top || after.offset < self.floor
        {
            return None;
        }
        usize::try_from(after.offset - self.floor).ok()
    }
}

/// Why a history call was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// No `[[history]]` rule names the room.
    NoHistory,
    /// `[host] max_history_memory` is full and the room has no log yet.
    Full,
    /// The message is larger than the room's `max_bytes`.
    TooLarge,
    /// The call's send budget does not cover every member.
    OverBudget(OverBudget),
    Join(JoinError),
}

/// A page of a room's history.
#[derive(Debug, Clone)]
pub struct Page {
    pub entries: Vec<(u64, Outgoing)>,
    pub complete: bool,
    pub more: bool,
    pub top: Position,
}

/// What a join with recovery did.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub recovered: bool,
    pub replayed: u32,
    /// Payload bytes queued (charged to the call's budget with `replayed`).
    pub replayed_bytes: usize,
    pub top: Position,
}

/// The histories of all rooms.
pub struct History {
    rules: Vec<HistoryRule>,
    logs: Mutex<HashMap<RoomKey, Arc<Mutex<Log>>>>,
    max_bytes: usize,
    used: AtomicUsize,
    entries: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl History {
    pub fn new(rules: Vec<HistoryRule>, max_bytes: usize, metrics: Arc<Metrics>) -> Self {
        metrics.history.limit.set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        History {
            rules,
            logs: Mutex::default(),
            max_bytes,
            used: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The rule that names the room.
    pub fn rule(&self, key: &RoomKey) -> Option<&HistoryRule> {
        self.rules.iter().find(|r| r.matches(key))
    }

    /// Bytes kept now (entries and logs).
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// The room's log, created when a rule names the room and it has none.
    fn log(&self, key: &RoomKey) -> Result<Arc<Mutex<Log>>, HistoryError> {
        let rule = self.rules.iter().position(|r| r.matches(key)).ok_or(HistoryError::NoHistory)?;
        let mut logs = self.logs.lock();
        if let Some(log) = logs.get(key) {
            return Ok(log.clone());
        }
        let own_cost = LOG_OVERHEAD + key.name.len();
        if !self.reserve(own_cost) {
            tracing::debug!(room = &*key.name, used = self.used(), "history memory full: no log for a new room");
            return Err(HistoryError::Full);
        }
        let log = Arc::new(Mutex::new(Log {
            rule,
            source: Source::Own,
            epoch: new_epoch(),
            top: 0,
            floor: 0,
            entries: VecDeque::new(),
            bytes: 0,
            last: Instant::now(),
            dropped: false,
            own_cost,
            diverged: false,
        }));
        logs.insert(key.clone(), log.clone());
        self.metrics.history.rooms.set(i64::try_from(logs.len()).unwrap_or(i64::MAX));
        Ok(log)
    }

    /// Runs `f` on the room's log, locked (looked up again if the sweep dropped it meanwhile).
    fn with_log<R>(&self, key: &RoomKey, f: impl FnOnce(&mut Log) -> R) -> Result<R, HistoryError> {
        let mut f = Some(f);
        loop {
            let log = self.log(key)?;
            let mut log = log.lock();
            if log.dropped {
                continue;
            }
            self.expire(&mut log, Instant::now());
            let f = f.take().ok_or(HistoryError::NoHistory)?;
            return Ok(f(&mut log));
        }
    }

    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Relaxed, Relaxed, |u| u.checked_add(bytes).filter(|&n| n <= self.max_bytes))
            .inspect(|u| {
                self.metrics.history.bytes.set(gauge(u + bytes));
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Relaxed);
        self.metrics.history.bytes.set(gauge(before.saturating_sub(bytes)));
    }

    fn pop(&self, log: &mut Log, reason: &str) -> bool {
        let Some(e) = log.entries.pop_front() else { return false };
        log.floor = e.offset;
        log.bytes -= e.cost;
        self.release(e.cost);
        let before = self.entries.fetch_sub(1, Relaxed);
        self.metrics.history.entries.set(gauge(before.saturating_sub(1)));
        self.metrics.history.evicted(reason, 1);
        true
    }

    /// Drops the entries older than the room's ttl.
    fn expire(&self, log: &mut Log, now: Instant) {
        let ttl = self.rules[log.rule].ttl;
        while log.entries.front().is_some_and(|e| now.saturating_duration_since(e.at) > ttl) {
            self.pop(log, "ttl");
        }
    }

    /// Keeps a publish, evicting the room's oldest entries past its bounds and, when all rooms
    /// together are at `max_history_memory`, the room's oldest until it fits. One the total
    /// cannot take even so is not kept (the floor moves past it).
    fn keep(&self, log: &mut Log, offset: u64, item: Outgoing, now: Instant) {
        let rule = &self.rules[log.rule];
        let cost = item.payload_len() + HISTORY_ENTRY_OVERHEAD;
        while log.entries.len() >= rule.size.max(1) {
            self.pop(log, "size");
        }
        while log.bytes + cost > rule.max_bytes && self.pop(log, "bytes") {}
        loop {
            if self.reserve(cost) {
                break;
            }
            if !self.pop(log, "total") {
                log.floor = offset;
                self.metrics.history.evicted("unkept", 1);
                tracing::debug!(offset, used = self.used(), "history memory full: a publish was not kept");
                return;
            }
        }
        log.entries.push_back(Entry { offset, at: now, item, cost });
        log.bytes += cost;
        let before = self.entries.fetch_add(1, Relaxed);
        self.metrics.history.entries.set(gauge(before + 1));
    }

    /// Empties a log and starts it again at `top` of `epoch`, its offsets from `source`.
    fn reset(&self, log: &mut Log, source: Source, epoch: Arc<str>, top: u64) {
        while self.pop(log, "reset") {}
        (log.source, log.epoch, log.top, log.floor) = (source, epoch, top, top);
    }

    /// The mirrors may have missed deliveries (the subscription broke or came back): they
    /// vouch for nothing until Redis speaks again.
    pub fn unsync(&self) {
        let logs: Vec<Arc<Mutex<Log>>> = self.logs.lock().values().cloned().collect();
        for log in logs {
            let mut l = log.lock();
            if l.source == Source::Mirror {
                let (epoch, top) = (l.epoch.clone(), l.top);
                self.reset(&mut l, Source::Unsynced, epoch, top);
            }
        }
    }

    /// The rooms this node published to with offsets of its own since it was last asked (with
    /// a broker: while Redis was out of reach), no longer marked.
    pub fn take_diverged(&self) -> Vec<RoomKey> {
        let logs: Vec<(RoomKey, Arc<Mutex<Log>>)> =
            self.logs.lock().iter().map(|(k, l)| (k.clone(), l.clone())).collect();
        logs.into_iter().filter(|(_, l)| std::mem::take(&mut l.lock().diverged)).map(|(k, _)| k).collect()
    }

    /// Marks `keys` as [`History::take_diverged`] found them again (what was taken could not be
    /// dealt with).
    pub fn mark_diverged(&self, keys: &[RoomKey]) {
        let logs = self.logs.lock();
        for log in keys.iter().filter_map(|k| logs.get(k)) {
            log.lock().diverged = true;
        }
    }

    /// Expires old entries in every room and drops the logs that kept nothing and saw nothing
    /// for their ttl (their epoch goes with them). Run periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let logs: Vec<(RoomKey, Arc<Mutex<Log>>)> =
            self.logs.lock().iter().map(|(k, l)| (k.clone(), l.clone())).collect();
        let mut gone = Vec::new();
        for (key, log) in logs {
            let mut l = log.lock();
            self.expire(&mut l, now);
            if l.entries.is_empty() && now.saturating_duration_since(l.last) > self.rules[l.rule].ttl {
                gone.push((key, log.clone()));
            }
        }
        if gone.is_empty() {
            return;
        }
        let mut logs = self.logs.lock();
        for (key, log) in gone {
            let mut l = log.lock();
            // Looked at again under the map's lock: a publish may have come in between.
            if !l.entries.is_empty() || now.saturating_duration_since(l.last) <= self.rules[l.rule].ttl {
                continue;
            }
            l.dropped = true;
            logs.remove(&key);
            self.release(l.own_cost);
        }
        self.metrics.history.rooms.set(gauge(logs.len()));
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A fresh epoch: 16 hex digits from the system's random source (unique per log; a restart
/// draws new ones). Falls back on the clock and a counter should the source fail.
pub fn new_epoch() -> Arc<str> {
    use ring::rand::{SecureRandom, SystemRandom};
    static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut bytes = [0u8; 8];
    let n = match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (nanos.as_nanos() as u64) ^ FALLBACK.fetch_add(1, Relaxed).rotate_left(48)
        }
    };
    Arc::from(format!("{n:016x}"))
}

/// Completes a text template: 0x01 `o` becomes the decimal offset, 0x01 `e` the epoch. Other
/// bytes (a lone 0x01 included) stay; binary messages stay as they are. The result is valid
/// UTF-8 when the template is (ASCII replaces ASCII).
pub fn render(item: Outgoing, offset: u64, epoch: &str) -> Outgoing {
    let Outgoing::Text(text) = &item else { return item };
    if !text.contains(&MARK) {
        return item;
    }
    let mut out = Vec::with_capacity(text.len() + 32);
    let mut i = 0;
    while i < text.len() {
        match (text[i], text.get(i + 1)) {
            (MARK, Some(b'o')) => {
                out.extend_from_slice(offset.to_string().as_bytes());
                i += 2;
            }
            (MARK, Some(b'e')) => {
                out.extend_from_slice(epoch.as_bytes());
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Outgoing::Text(Bytes::from(out))
}

/// History through the hub, on this node: publishes, reads and joins of rooms with a history,
/// and the deliveries that keep a mirror of Redis's history (see `history_cluster` for the
/// calls plugins make, which choose between Redis and these).
impl Hub {
    /// Publishes `item` (a template, see [`render`]) to a room with a history: the offset is
    /// given, the message completed, kept and queued to the members under the room's lock;
    /// then it goes to the other nodes like any publish. A mirror of Redis's history becomes
    /// this node's own, with a fresh epoch: Redis is out of reach.
    pub(super) fn publish_kept(
        &self,
        key: &RoomKey,
        item: Outgoing,
        except: Option<u64>,
        allowance: Allowance,
    ) -> Result<(Delivery, Position), HistoryError> {
        let history = &self.history;
        let (delivery, position, item) = history.with_log(key, |log| {
            if log.source != Source::Own {
                history.reset(log, Source::Own, new_epoch(), 0);
            }
            let now = Instant::now();
            let offset = log.top + 1;
            let item = render(item, offset, &log.epoch).to_shared();
            if item.payload_len() + HISTORY_ENTRY_OVERHEAD > history.rules[log.rule].max_bytes {
                return Err(HistoryError::TooLarge);
            }
            let delivery = self.rooms.publish(key, &item, except, allowance).map_err(HistoryError::OverBudget)?;
            log.top = offset;
            log.last = now;
            log.diverged = true;
            history.keep(log, offset, item.clone(), now);
            Ok((delivery, log.position(), item))
        })??;
        self.metrics.publishes.inc();
        if let Some(peers) = self.peers.get() {
            peers.publish(key, &item);
        }
        Ok((delivery, position))
    }

    /// A publish Redis gave `offset` in `epoch`, as this node's subscription delivers it (in
    /// Redis's order): completed, queued to the members (but `except`) and kept in the room's
    /// mirror under its lock. A mirror that does not continue with this offset starts again
    /// from it; one that had it already (an offset at or below its top) ignores it.
    pub(crate) fn history_deliver(&self, key: &RoomKey, epoch: &str, offset: u64, item: Outgoing, except: Option<u64>) {
        let item = render(item, offset, epoch).to_shared();
        let history = &self.history;
        let kept = history.with_log(key, |log| {
            let same = log.source == Source::Mirror && *log.epoch == *epoch;
            if same && offset <= log.top {
                return;
            }
            if !same || offset != log.top + 1 {
                history.reset(log, Source::Mirror, Arc::from(epoch), offset.saturating_sub(1));
            }
            let now = Instant::now();
            let _ = self.rooms.publish(key, &item, except, Allowance::UNLIMITED);
            (log.top, log.last) = (offset, now);
            if item.payload_len() + HISTORY_ENTRY_OVERHEAD <= history.rules[log.rule].max_bytes {
                history.keep(log, offset, item.clone(), now);
            } else {
                log.floor = offset;
            }
        });
        if kept.is_err() {
            // No rule on this node, or no memory for a new log: delivered, not kept.
            let _ = self.rooms.publish(key, &item, except, Allowance::UNLIMITED);
        }
    }

    /// This node's subscription has delivered every publish of the room up to `top` of
    /// `epoch` and none after: the mirror continues from there (emptied if it did not).
    pub(crate) fn history_seed(&self, key: &RoomKey, epoch: &str, top: u64) {
        let history = &self.history;
        let _ = history.with_log(key, |log| {
            if !(log.source == Source::Mirror && *log.epoch == *epoch && log.top >= top) {
                history.reset(log, Source::Mirror, Arc::from(epoch), top);
            }
            log.last = Instant::now();
        });
    }

    /// Joins under the room's lock: what the join answers before any replay.
    fn join_locked(&self, j: &Joining, log: &mut Log, top: Position) -> Result<Recovery, HistoryError> {
        self.join(j.conn, j.key.clone(), j.max_rooms).map_err(HistoryError::Join)?;
        log.last = Instant::now();
        Ok(Recovery { recovered: false, replayed: 0, replayed_bytes: 0, top })
    }

    /// Joins a room with a history and queues the entries after `after`, both under the
    /// room's lock (see the module's notes), when the log's offsets come from `source`.
    /// `recovered` is false when `after` is absent, of another epoch, in the future or below
    /// what is kept, or when the entries do not fit the allowance or the connection's queue;
    /// the connection joins either way.
    pub(super) fn join_recovering(
        &self,
        j: &Joining,
        after: Option<&Position>,
        source: Source,
    ) -> Result<Recovery, HistoryError> {
        self.history.with_log(j.key, |log| {
            let recovery = self.join_locked(j, log, log.position())?;
            Ok(match after.and_then(|a| log.resume(a, source)) {
                Some(from) => replay(j, log.entries.range(from..).map(|e| &e.item), recovery),
                None => recovery,
            })
        })?
    }

    /// [`Hub::join_recovering`] from a mirror, but only if it has everything after `after`:
    /// `None` (and no join) otherwise.
    pub(super) fn join_mirrored(&self, j: &Joining, after: &Position) -> Result<Option<Recovery>, HistoryError> {
        self.history.with_log(j.key, |log| {
            let Some(from) = log.resume(after, Source::Mirror) else { return Ok(None) };
            let recovery = self.join_locked(j, log, log.position())?;
            Ok(Some(replay(j, log.entries.range(from..).map(|e| &e.item), recovery)))
        })?
    }

    /// Joins with what Redis had after `after` when this node's subscription passed
    /// `remote.top` (a probe): `remote`'s entries, then the mirror's after them, under the
    /// room's lock. Recovered only if `remote` has every entry from `after` to its top and the
    /// mirror every one since.
    pub(super) fn join_from_remote(
        &self,
        j: &Joining,
        after: Option<&Position>,
        remote: Remote,
    ) -> Result<Recovery, HistoryError> {
        self.history.with_log(j.key, |log| {
            let mirrored = log.source == Source::Mirror && *log.epoch == *remote.epoch && log.floor <= remote.top;
            let top =
                if mirrored { log.position() } else { Position { offset: remote.top, epoch: remote.epoch.clone() } };
            let recovery = self.join_locked(j, log, top)?;
            let Some(after) = after else { return Ok(recovery) };
            if !mirrored || !remote.continues(after) {
                return Ok(recovery);
            }
            let missed: Vec<Outgoing> =
                remote.entries.into_iter().map(|(o, t)| render(t, o, &remote.epoch).to_shared()).collect();
            let since = log.entries.iter().filter(|e| e.offset > remote.top).map(|e| &e.item);
            Ok(replay(j, missed.iter().chain(since), recovery))
        })?
    }

    /// Up to `limit` entries (capped at a page) after `after` (`None`: from the oldest kept).
    /// Only a log of this node's own vouches for completeness: a mirror read here is one whose
    /// Redis is out of reach.
    pub(super) fn history_read_local(
        &self,
        key: &RoomKey,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Page, HistoryError> {
        self.history.with_log(key, |log| {
            let (from, complete) = match after {
                Some(a) => match log.resume(a, log.source) {
                    Some(i) => (i, true),
                    None => (0, false),
                },
                None => (0, log.floor == 0),
            };
            let complete = complete && log.source == Source::Own;
            let mut entries = Vec::new();
            let mut bytes = 0;
            let limit = limit.min(MAX_PAGE_ENTRIES);
            for e in log.entries.range(from..) {
                if entries.len() >= limit || (bytes + e.item.payload_len() > MAX_PAGE_BYTES && !entries.is_empty()) {
                    break;
                }
                bytes += e.item.payload_len();
                entries.push((e.offset, e.item.clone()));
            }
            let more = from + entries.len() < log.entries.len();
            Page { entries, complete, more, top: log.position() }
        })
    }

    /// The room's current position on this node.
    pub(super) fn history_current_local(&self, key: &RoomKey) -> Result<Position, HistoryError> {
        self.history.with_log(key, |log| log.position())
    }
}

/// A connection joining a room with a history, and what the call may spend replaying.
pub(crate) struct Joining<'a> {
    pub conn: &'a Arc<ConnShared>,
    pub key: &'a RoomKey,
    pub max_rooms: usize,
    pub allowance: Allowance,
}

/// Queues `missed` to the connection (a member already): `recovered` if all of it fits the
/// call's allowance, the connection's message size and its queue.
fn replay<'a>(j: &Joining, missed: impl Iterator<Item = &'a Outgoing> + Clone, mut recovery: Recovery) -> Recovery {
    let (count, bytes) = missed.clone().fold((0usize, 0usize), |(n, b), item| (n + 1, b + item.payload_len()));
    if count > j.allowance.copies as usize || bytes > j.allowance.bytes {
        tracing::debug!(room = &*j.key.name, count, "history replay over the call's send budget");
        return recovery;
    }
    for item in missed {
        if item.payload_len() > j.conn.route.limits.max_message_size || j.conn.send(item.clone()).is_err() {
            return recovery;
        }
        recovery.replayed += 1;
        recovery.replayed_bytes += item.payload_len();
    }
    recovery.recovered = true;
    recovery
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("orders*", "orders"));
        assert!(glob("orders*", "orders:42"));
        assert!(!glob("orders*", "order"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("lobby", "lobby"));
        assert!(!glob("lobby", "lobby2"));
        assert!(glob("*:log", "x:y:log"));
    }

    fn bytes_of(item: &Outgoing) -> Vec<u8> {
        match item {
            Outgoing::Text(b) | Outgoing::Binary(b) => b.to_vec(),
            Outgoing::Shared { msg, .. } => msg.payload.to_vec(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn markers_become_the_offset_and_the_epoch_and_nothing_else_changes() {
        let t = |s: &str| Outgoing::Text(Bytes::from(s.to_owned()));
        let r = |s: &str, o, e| String::from_utf8(bytes_of(&render(t(s), o, e))).expect("utf-8");
        assert_eq!(r("{\"o\":\u{1}o,\"e\":\"\u{1}e\"}", 42, "ab12"), "{\"o\":42,\"e\":\"ab12\"}");
        assert_eq!(r("no markers \u{1}x \u{1}", 7, "e"), "no markers \u{1}x \u{1}");
        let bin = Outgoing::Binary(Bytes::from_static(b"\x01o"));
        assert!(matches!(render(bin, 1, "e"), Outgoing::Binary(b) if &b[..] == b"\x01o"));
        // What a JSON serializer writes for a client's 0x01 is an escape, not a marker.
        let forged = serde_json::to_string(&serde_json::json!({"data": "\u{1}o"})).expect("json");
        assert_eq!(r(&forged, 9, "e"), forged);
    }

    fn rule(size: usize, ttl: Duration, max_bytes: usize) -> HistoryRule {
        HistoryRule { rooms: "h*".into(), plugin: None, size, ttl, max_bytes }
    }

    fn hub(rules: Vec<HistoryRule>, total: usize) -> Hub {
        let limits = super::super::KvLimits { max_key: 8, max_value: 8, max_keys: 8 };
        Hub::new(limits, 1 << 20, Arc::default()).with_history(rules, total)
    }

    fn publish(hub: &Hub, room: &str, text: &str) -> Position {
        let key = RoomKey::new(&Arc::from("p"), room);
        let item = Outgoing::Text(Bytes::from(text.to_owned()));
        hub.publish_kept(&key, item, None, Allowance::UNLIMITED).expect("publish").1
    }

    #[test]
    fn offsets_count_per_room_and_reads_resume_after_a_position() {
        let hub = hub(vec![rule(3, Duration::from_secs(60), 1 << 20)], 1 << 20);
        let key = RoomKey::new(&Arc::from("p"), "h1");
        let first = publish(&hub, "h1", "a\u{1}o");
        assert_eq!(first.offset, 1);
        assert_eq!(publish(&hub, "h2", "x").offset, 1, "offsets are per room");
        for _ in 0..4 {
            publish(&hub, "h1", "b\u{1}o");
        }
        // Size 3: offsets 3, 4, 5 are kept.
        let page =
            hub.history_read_local(&key, Some(&Position { offset: 2, epoch: first.epoch.clone() }), 10).expect("read");
        assert!(page.complete);
        assert_eq!(page.entries.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(bytes_of(&page.entries[0].1), b"b3");
        assert_eq!(page.top.offset, 5);
        let too_old = hub.history_read_local(&key, Some(&first), 10).expect("read");
        assert!(!too_old.complete, "offset 1 is below what is kept");
        let other_epoch = Position { offset: 4, epoch: Arc::from("0") };
        assert!(!hub.history_read_local(&key, Some(&other_epoch), 10).expect("read").complete);
        let future = Position { offset: 6, epoch: first.epoch.clone() };
        assert!(!hub.history_read_local(&key, Some(&future), 10).expect("read").complete);
        let paged =
            hub.history_read_local(&key, Some(&Position { offset: 2, epoch: first.epoch.clone() }), 2).expect("read");
        assert!(paged.more && paged.entries.len() == 2);
        assert_eq!(hub.metrics.history.evictions.get_or_create(&reason("size")).get(), 2);
        let none = RoomKey::new(&Arc::from("p"), "lobby");
        assert_eq!(hub.history_current_local(&none), Err(HistoryError::NoHistory));
    }

    fn reason(r: &str) -> crate::metrics::ReasonLabel {
        crate::metrics::ReasonLabel { reason: r.to_owned() }
    }

    #[test]
    fn room_bytes_and_the_total_bound_what_is_kept() {
        let per_room = 3 * (10 + HISTORY_ENTRY_OVERHEAD);
        let hub = hub(vec![rule(100, Duration::from_secs(60), per_room)], 1 << 20);
        for _ in 0..5 {
            publish(&hub, "h1", "0123456789");
        }
        let key = RoomKey::new(&Arc::from("p"), "h1");
        let page = hub.history_read_local(&key, None, 100).expect("read");
        assert_eq!(page.entries.len(), 3, "max_bytes holds three");
        assert!(!page.complete, "offsets 1 and 2 are gone");
        assert_eq!(hub.metrics.history.evictions.get_or_create(&reason("bytes")).get(), 2);

        // A total that holds a log and two entries: the third evicts the room's oldest.
        let total = LOG_OVERHEAD + 2 + 2 * (10 + HISTORY_ENTRY_OVERHEAD);
        let hub = hub_total(total);
        for _ in 0..3 {
            publish(&hub, "h1", "0123456789");
        }
        assert!(hub.history.used() <= total);
        assert_eq!(hub.metrics.history.evictions.get_or_create(&reason("total")).get(), 1);
        // Another room finds no memory for its log.
        let other = RoomKey::new(&Arc::from("p"), "h2");
        let item = Outgoing::Text(Bytes::from_static(b"x"));
        assert_eq!(hub.publish_kept(&other, item, None, Allowance::UNLIMITED).err(), Some(HistoryError::Full));
        assert_eq!(hub.metrics.history.bytes.get(), i64::try_from(hub.history.used()).expect("small"));
    }

    fn hub_total(total: usize) -> Hub {
        hub(vec![rule(100, Duration::from_secs(60), 1 << 20)], total)
    }

    #[test]
    fn entries_past_the_ttl_go_and_an_idle_empty_log_takes_its_epoch_with_it() {
        let hub = hub(vec![rule(100, Duration::from_millis(50), 1 << 20)], 1 << 20);
        let first = publish(&hub, "h1", "a");
        std::thread::sleep(Duration::from_millis(120));
        hub.history.sweep();
        assert_eq!(hub.history.entries.load(Relaxed), 0);
        assert_eq!(hub.history.used(), 0, "the idle log was dropped too");
        assert_eq!(hub.metrics.history.evictions.get_or_create(&reason("ttl")).get(), 1);
        let again = publish(&hub, "h1", "b");
        assert_eq!(again.offset, 1);
        assert_ne!(again.epoch, first.epoch, "history lost: a new epoch");
    }
}
