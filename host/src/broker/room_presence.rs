//! Rooms across nodes: who is in each (plugin, room) on every live node, for the `presence`
//! calls (member counts, pages of users, and joins and leaves announced once per user).
//!
//! Each node keeps its own part in Redis, one hash per room, `<prefix>:rp:<node>:<plugin>:<room>`
//! (field `u:<identity>`: the identity's connections in the room on this node; field `a`: the
//! connections without an identity), and counts as alive while its heartbeat in
//! `<prefix>:presence:nodes` (see [`super::presence`]) is younger than `node_ttl`. Readers
//! add up the hashes of the live nodes in one script, so a node that dies drops out within
//! `node_ttl`, and its hashes expire (this node renews its own every fifth of `node_ttl`).
//!
//! One task per node writes them, on its own connection, in order: each write carries the
//! number as it is when the write is sent (never a difference), so a late or repeated write is
//! harmless. A join or leave that may be a user's first or last connection in the room asks
//! through the same task: one script writes this node's number for the user and sums the other
//! live nodes' in the same atomic step, so of two nodes where a user arrives at once exactly
//! one sees nobody elsewhere. Counts and pages go through the task too, after this node's
//! pending writes, so they include this node's latest. After a reconnection (Redis restarted
//! empty, a failover) the task writes every room again. While Redis cannot be reached, every
//! question is answered `None` at once (at most [`ASK_TIMEOUT`] when Redis hangs): the caller
//! falls back to this node's numbers, flagged.
//!
//! Costs: a count or a page reads every member of the room on every node (O(members) in
//! Redis, bounded by the host's room limits); writes are pipelined.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

use super::link::{BACKOFF_MIN, jitter, next_backoff};
use crate::hub::{Census, Hub, RoomKey};

/// How long one question (a decision, a count, a page) waits for Redis.
pub(super) const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the writes of one round wait for Redis before the connection counts as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Questions waiting for the task; beyond, they are answered `None` at once.
const MAX_ASKS: usize = 1024;
/// Changes waiting to be written; beyond, the node writes everything again instead.
const MAX_DIRTY: usize = 100_000;
/// Fields per `HSET`, and commands per pipeline, when the node writes everything again.
const CHUNK: usize = 1000;
/// Most identities one page may hold: the host's page of 1000 and one more, which tells it
/// whether there is a next page.
const MAX_PAGE: usize = 1001;

/// `now`: Redis's clock in milliseconds (every node measures liveness on the same clock).
const NOW: &str = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) ";

/// KEYS: the nodes' set, this node's hash of the room. ARGV: ttl ms, node, `<prefix>:rp:`,
/// `:<plugin>:<room>`, field, this node's number. Writes this node's number for the field and
/// returns the field's sum over the other live nodes, in one step.
const DECIDE: &str = "local v = tonumber(ARGV[6]) \
    if v > 0 then \
      redis.call('HSET', KEYS[2], ARGV[5], v) redis.call('PEXPIRE', KEYS[2], ARGV[1]) \
    else redis.call('HDEL', KEYS[2], ARGV[5]) end \
    local total = 0 \
    for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')) do \
      if n ~= ARGV[2] then \
        local c = redis.call('HGET', ARGV[3] .. n .. ARGV[4], ARGV[5]) \
        if c then total = total + tonumber(c) end \
      end \
    end \
    return total";

/// The hashes of the room on every live node and on this one (alive or not in the set: its
/// own numbers count for it). ARGV: ttl ms, node, `<prefix>:rp:`, `:<plugin>:<room>`.
const LIVE_HASHES: &str = "local hashes = {ARGV[3] .. ARGV[2] .. ARGV[4]} \
    for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')) do \
      if n ~= ARGV[2] then table.insert(hashes, ARGV[3] .. n .. ARGV[4]) end \
    end ";

/// KEYS: the nodes' set. ARGV: as [`LIVE_HASHES`]. Returns {connections, users, anonymous}.
const CENSUS: &str = "local conns, anon, users, seen = 0, 0, 0, {} \
    for _, h in ipairs(hashes) do \
      local kv = redis.call('HGETALL', h) \
      for i = 1, #kv, 2 do \
        local c = tonumber(kv[i + 1]) or 0 \
        conns = conns + c \
        if kv[i] == 'a' then anon = anon + c \
        elseif not seen[kv[i]] then seen[kv[i]] = true users = users + 1 end \
      end \
    end \
    return {conns, users, anon}";

/// KEYS: the nodes' set. ARGV: as [`LIVE_HASHES`], then the field after which the page starts
/// (`u:` for the first page) and the page's size. Returns the page's fields, in byte order.
const PAGE: &str = "local seen, list = {}, {} \
    for _, h in ipairs(hashes) do \
      for _, f in ipairs(redis.call('HKEYS', h)) do \
        if f ~= 'a' and f > ARGV[5] and not seen[f] then seen[f] = true table.insert(list, f) end \
      end \
    end \
    table.sort(list) \
    local out = {} \
    for i = 1, math.min(#list, tonumber(ARGV[6])) do out[i] = list[i] end \
    return out";

/// A hash field: an identity's, or the anonymous members'.
fn field(user: Option<&str>) -> String {
    match user {
        Some(u) => format!("u:{u}"),
        None => "a".to_owned(),
    }
}

/// A question for the task.
enum Ask {
    /// Write this node's number of `user`'s connections in the room, and the sum elsewhere.
    Decide {
        key: RoomKey,
        user: std::sync::Arc<str>,
        reply: oneshot::Sender<Option<usize>>,
    },
    Census {
        key: RoomKey,
        reply: oneshot::Sender<Option<Census>>,
    },
    Page {
        key: RoomKey,
        after: Option<String>,
        limit: usize,
        reply: oneshot::Sender<Option<Vec<String>>>,
    },
}

impl Ask {
    fn unknown(self) {
        match self {
            Ask::Decide { reply, .. } => drop(reply.send(None)),
            Ask::Census { reply, .. } => drop(reply.send(None)),
            Ask::Page { reply, .. } => drop(reply.send(None)),
        }
    }
}

#[derive(Default)]
struct Dirty {
    fields: HashSet<(RoomKey, Option<std::sync::Arc<str>>)>,
    /// Changes were dropped (too many): write everything again.
    overflow: bool,
}

/// The hub's side: changes and questions, handed to the task.
pub(super) struct RoomPresence {
    dirty: Mutex<Dirty>,
    wake: Notify,
    asks: mpsc::Sender<Ask>,
    /// Whether the task has a connection to Redis (questions asked meanwhile get `None` at once).
    up: std::sync::atomic::AtomicBool,
}

/// The task: the Redis side.
pub(super) struct Writer {
    hub: Weak<Hub>,
    client: super::client::Redis,
    shared: std::sync::Arc<RoomPresence>,
    asks: mpsc::Receiver<Ask>,
    node: String,
    /// `<prefix>:rp:`
    prefix: String,
    /// The nodes' heartbeat set.
    nodes: String,
    ttl: Duration,
    /// The rooms this node has written something for (renewed, and deleted on a rewrite).
    written: HashSet<RoomKey>,
}

impl RoomPresence {
    pub fn start(
        hub: Weak<Hub>,
        client: super::client::Redis,
        node: u64,
        prefix: &str,
        ttl: Duration,
    ) -> (std::sync::Arc<RoomPresence>, Writer) {
        let (tx, rx) = mpsc::channel(MAX_ASKS);
        let shared = std::sync::Arc::new(RoomPresence {
            dirty: Mutex::default(),
            wake: Notify::new(),
            asks: tx,
            up: std::sync::atomic::AtomicBool::new(false),
        });
        let writer = Writer {
            hub,
            client,
            shared: shared.clone(),
            asks: rx,
            node: format!("{node:016x}"),
            prefix: format!("{prefix}:rp:"),
            nodes: format!("{prefix}:presence:nodes"),
            ttl,
            written: HashSet::new(),
        };
        (shared, writer)
    }

    /// This node's number for `user` in the room changed: written with the next round.
    pub fn changed(&self, key: &RoomKey, user: Option<&str>) {
        let mut dirty = self.dirty.lock();
        if dirty.fields.len() >= MAX_DIRTY {
            dirty.overflow = true;
        } else {
            dirty.fields.insert((key.clone(), user.map(std::sync::Arc::from)));
        }
        drop(dirty);
        self.wake.notify_one();
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Option<T>>) -> Ask) -> Option<T> {
        if !self.up.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        if self.asks.try_send(make(tx)).is_err() {
            tracing::warn!("broker: too many presence questions waiting for Redis; answered unknown");
            return None;
        }
        // The task answers every question (`None` on failure); the timeout covers a task
        // that is itself waiting for a hung Redis.
        tokio::time::timeout(ASK_TIMEOUT * 2, rx).await.ok()?.ok()?
    }

    /// Writes this node's number for `user` in the room and sums the other nodes' (one
    /// script). When that cannot be done now, the number is written with the next round.
    pub async fn user_elsewhere(&self, key: RoomKey, user: std::sync::Arc<str>) -> Option<usize> {
        let (k, u) = (key.clone(), user.clone());
        let answer = self.ask(|reply| Ask::Decide { key, user, reply }).await;
        if answer.is_none() {
            self.changed(&k, Some(&u));
        }
        answer
    }

    pub async fn census(&self, key: RoomKey) -> Option<Census> {
        self.ask(|reply| Ask::Census { key, reply }).await
    }

    pub async fn users(&self, key: RoomKey, after: Option<String>, limit: usize) -> Option<Vec<String>> {
        let limit = limit.min(MAX_PAGE);
        self.ask(|reply| Ask::Page { key, after, limit, reply }).await
    }
}

impl Writer {
    fn hash(&self, node: &str, key: &RoomKey) -> String {
        format!("{}{node}{}", self.prefix, suffix(key))
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Writes and answers until the hub is gone (or the task is aborted).
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut renew = tokio::time::interval(self.ttl / 5);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let conn = match tokio::time::timeout(WRITE_TIMEOUT, self.client.get_multiplexed_async_connection()).await {
                Ok(Ok(c)) => c,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::warn!(%error, retry_ms = backoff.as_millis() as u64, "broker: cannot connect to Redis for room presence");
                    // Questions meanwhile are answered at once, not after the backoff.
                    let sleep = tokio::time::sleep(jitter(backoff));
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            _ = &mut sleep => break,
                            ask = self.asks.recv() => match ask {
                                Some(a) => a.unknown(),
                                None => return,
                            },
                        }
                    }
                    backoff = next_backoff(backoff);
                    continue;
                }
            };
            backoff = BACKOFF_MIN;
            tracing::info!("broker: room presence connected; writing this node's rooms again");
            if self.serve(conn, &mut renew).await.is_none() {
                return;
            }
            self.shared.up.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Serves one connection: `Some` when it is lost, `None` when the hub is gone.
    async fn serve(
        &mut self,
        mut conn: redis::aio::MultiplexedConnection,
        renew: &mut tokio::time::Interval,
    ) -> Option<()> {
        let mut rewrite = true;
        let mut asks = Vec::new();
        loop {
            let hub = self.hub.upgrade()?;
            let (fields, overflow) = {
                let mut d = self.shared.dirty.lock();
                (std::mem::take(&mut d.fields), std::mem::take(&mut d.overflow))
            };
            let pipes = if rewrite || overflow { self.rewrite(&hub) } else { vec![self.flush(&hub, fields)] };
            drop(hub);
            // An empty pipeline is never sent: a multiplexed connection would wait for an
            // answer that never comes.
            for pipe in pipes.into_iter().filter(|p| !p.is_empty()) {
                match tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => {}
                    failed => {
                        let error = failed.map_or_else(|_| "timed out".to_owned(), |r| format!("{:?}", r.err()));
                        tracing::warn!(%error, "broker: room presence write failed; reconnecting");
                        asks.drain(..).for_each(Ask::unknown);
                        return Some(());
                    }
                }
            }
            if rewrite {
                rewrite = false;
                self.shared.up.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            for ask in asks.drain(..) {
                if !self.answer(&mut conn, ask).await {
                    return Some(());
                }
            }
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                ask = self.asks.recv() => asks.push(ask?),
                _ = renew.tick() => {
                    let mut pipe = redis::pipe();
                    for key in &self.written {
                        pipe.cmd("PEXPIRE").arg(self.hash(&self.node, key)).arg(self.ttl_ms()).ignore();
                    }
                    if !self.written.is_empty()
                        && !matches!(tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<()>(&mut conn)).await, Ok(Ok(())))
                    {
                        tracing::warn!("broker: room presence renewal failed; reconnecting");
                        return Some(());
                    }
                }
            }
            while asks.len() < 64 {
                match self.asks.try_recv() {
                    Ok(a) => asks.push(a),
                    Err(_) => break,
                }
            }
        }
    }

    /// The changed fields, with this node's numbers now.
    fn flush(&mut self, hub: &Hub, fields: HashSet<(RoomKey, Option<std::sync::Arc<str>>)>) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (key, user) in fields {
            let n = hub.rooms.user_conns(&key, user.as_deref());
            let hash = self.hash(&self.node, &key);
            if n > 0 {
                pipe.cmd("HSET").arg(&hash).arg(field(user.as_deref())).arg(n).ignore();
                pipe.cmd("PEXPIRE").arg(&hash).arg(self.ttl_ms()).ignore();
                self.written.insert(key);
            } else {
                pipe.cmd("HDEL").arg(&hash).arg(field(user.as_deref())).ignore();
                if hub.rooms.count(&key) == 0 {
                    self.written.remove(&key);
                }
            }
        }
        pipe
    }

    /// Everything again: this node's hashes replaced by its rooms now.
    fn rewrite(&mut self, hub: &Hub) -> Vec<redis::Pipeline> {
        let mut pipes = vec![redis::pipe()];
        let mut n = 0;
        let mut next = |pipes: &mut Vec<redis::Pipeline>| {
            n += 1;
            if n % CHUNK == 0 {
                pipes.push(redis::pipe());
            }
            pipes.len() - 1
        };
        for key in self.written.drain().collect::<Vec<_>>() {
            let i = next(&mut pipes);
            pipes[i].cmd("DEL").arg(self.hash(&self.node, &key)).ignore();
        }
        for (key, fields) in hub.rooms.presence() {
            let hash = self.hash(&self.node, &key);
            let i = next(&mut pipes);
            pipes[i].cmd("DEL").arg(&hash).ignore();
            for chunk in fields.chunks(CHUNK) {
                let i = next(&mut pipes);
                let cmd = pipes[i].cmd("HSET").arg(&hash);
                for (user, n) in chunk {
                    cmd.arg(field(user.as_deref())).arg(*n);
                }
                cmd.ignore();
            }
            let i = next(&mut pipes);
            pipes[i].cmd("PEXPIRE").arg(&hash).arg(self.ttl_ms()).ignore();
            self.written.insert(key);
        }
        pipes
    }

    /// Answers one question; false when the connection failed.
    async fn answer(&mut self, conn: &mut redis::aio::MultiplexedConnection, ask: Ask) -> bool {
        let (script, key) = match &ask {
            Ask::Decide { key, .. } => (DECIDE, key),
            Ask::Census { key, .. } => (CENSUS, key),
            Ask::Page { key, .. } => (PAGE, key),
        };
        let mut cmd = redis::cmd("EVAL");
        match &ask {
            Ask::Decide { .. } => {
                cmd.arg(format!("{NOW}{script}")).arg(2).arg(&self.nodes).arg(self.hash(&self.node, key))
            }
            _ => cmd.arg(format!("{NOW}{LIVE_HASHES}{script}")).arg(1).arg(&self.nodes),
        };
        cmd.arg(self.ttl_ms()).arg(&self.node).arg(&self.prefix).arg(suffix(key));
        match ask {
            Ask::Decide { key, user, reply } => {
                let n = self.hub.upgrade().map_or(0, |h| h.rooms.user_conns(&key, Some(&user)));
                cmd.arg(field(Some(&user))).arg(n);
                if n > 0 {
                    self.written.insert(key);
                } else if self.hub.upgrade().is_none_or(|h| h.rooms.count(&key) == 0) {
                    // Emptied here: nothing left to renew.
                    self.written.remove(&key);
                }
                let r = self.query::<u64>(conn, &cmd).await;
                let ok = r.is_some();
                let _ = reply.send(r.map(|n| n as usize));
                ok
            }
            Ask::Census { reply, .. } => {
                let r = self.query::<(u64, u64, u64)>(conn, &cmd).await;
                let ok = r.is_some();
                let census =
                    r.map(|(c, u, a)| Census { connections: c as usize, users: u as usize, anonymous: a as usize });
                let _ = reply.send(census);
                ok
            }
            Ask::Page { after, limit, reply, .. } => {
                cmd.arg(field(Some(after.as_deref().unwrap_or("")))).arg(limit);
                let r = self.query::<Vec<String>>(conn, &cmd).await;
                let ok = r.is_some();
                let users = r
                    .map(|fields| fields.into_iter().filter_map(|f| f.strip_prefix("u:").map(str::to_owned)).collect());
                let _ = reply.send(users);
                ok
            }
        }
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        cmd: &redis::Cmd,
    ) -> Option<T> {
        match tokio::time::timeout(ASK_TIMEOUT, cmd.query_async::<T>(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "broker: room presence question failed");
                None
            }
            Err(_) => {
                tracing::warn!("broker: Redis did not answer a room presence question in time");
                None
            }
        }
    }
}

/// `:<plugin>:<room>`: the end of a room's hash name, the same for every node.
fn suffix(key: &RoomKey) -> String {
    format!(":{}:{}", key.plugin, key.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway `redis-server` on a free port (none installed: the test says so and passes).
    struct Server(std::process::Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn redis() -> Option<(Server, redis::aio::MultiplexedConnection)> {
        let exe = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = std::process::Command::new(exe)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = Server(child);
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        for _ in 0..100 {
            if let Ok(c) = client.get_multiplexed_async_connection().await {
                return Some((server, c));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn eval<T: redis::FromRedisValue>(
        c: &mut redis::aio::MultiplexedConnection,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> T {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
        cmd.query_async(c).await.expect("script")
    }

    /// The scripts against a real Redis: node `a` (this one) and `b` are alive, `c` fell silent
    /// longer than the ttl ago; a decision writes and sums the others in one step, counts
    /// and pages de-duplicate identities across nodes and skip the silent node.
    #[tokio::test]
    async fn the_scripts_count_live_nodes_once_per_user_and_decide_first_and_last() {
        let Some((_server, mut c)) = redis().await else {
            eprintln!("redis-server not installed: skipped");
            return;
        };
        let nodes = "t:presence:nodes";
        let hash = |n: &str| format!("t:rp:{n}:p:lobby");
        let now: (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        let now_ms = now.0 * 1000 + now.1 / 1000;
        let _: () = redis::cmd("ZADD")
            .arg(nodes)
            .arg(now_ms)
            .arg("b")
            .arg(now_ms - 60_000)
            .arg("c")
            .query_async(&mut c)
            .await
            .unwrap();
        let _: () =
            redis::cmd("HSET").arg(hash("b")).arg("u:bob").arg(2).arg("a").arg(1).query_async(&mut c).await.unwrap();
        let _: () = redis::cmd("HSET").arg(hash("c")).arg("u:ada").arg(5).query_async(&mut c).await.unwrap();
        let decide = format!("{NOW}{DECIDE}");
        let args = |field: &'static str, n: &'static str| ["10000", "a", "t:rp:", ":p:lobby", field, n];
        let a_hash = hash("a");
        // Ada's first tab on a: the silent node c does not count.
        assert_eq!(eval::<u64>(&mut c, &decide, &[nodes, &a_hash], &args("u:ada", "1")).await, 0);
        // Bob on a: b has him twice already.
        assert_eq!(eval::<u64>(&mut c, &decide, &[nodes, &a_hash], &args("u:bob", "1")).await, 2);
        let census = format!("{NOW}{LIVE_HASHES}{CENSUS}");
        let base = ["10000", "a", "t:rp:", ":p:lobby"];
        let (conns, users, anon): (u64, u64, u64) = eval(&mut c, &census, &[nodes], &base).await;
        assert_eq!((conns, users, anon), (5, 2, 1), "ada 1 + bob 1 here + bob 2 and 1 anonymous on b");
        let page = format!("{NOW}{LIVE_HASHES}{PAGE}");
        let all: Vec<String> = eval(&mut c, &page, &[nodes], &[&base[..], &["u:", "10"]].concat()).await;
        assert_eq!(all, ["u:ada", "u:bob"]);
        let rest: Vec<String> = eval(&mut c, &page, &[nodes], &[&base[..], &["u:ada", "10"]].concat()).await;
        assert_eq!(rest, ["u:bob"]);
        // Ada leaves a: written as gone, and nobody elsewhere has her (c is silent).
        assert_eq!(eval::<u64>(&mut c, &decide, &[nodes, &a_hash], &args("u:ada", "0")).await, 0);
        let left: Option<String> = redis::cmd("HGET").arg(&a_hash).arg("u:ada").query_async(&mut c).await.unwrap();
        assert_eq!(left, None);
        let (conns, users, _): (u64, u64, u64) = eval(&mut c, &census, &[nodes], &base).await;
        assert_eq!((conns, users), (4, 1));
    }
}
