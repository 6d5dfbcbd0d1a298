//! The history calls plugins make, on one node or many. Alone, a node's logs are the history
//! (see `history`). With a broker that shares history, Redis keeps it and gives the offsets, so
//! every node has the same history in the same order; this node's log of a room mirrors what
//! its subscription delivered. When Redis cannot be reached, the node goes on alone: local
//! delivery and local history with an epoch of its own, and recovery says `recovered: false`
//! wherever it cannot be sure nothing was missed.
//!
//! A recovering join must not lose or repeat a publish at the seam between what it replays and
//! what reaches the client live. When the mirror holds everything after the client's position,
//! the join is made from it under the room's lock, as on one node. Otherwise the node reads
//! Redis in a script that also sends a probe down the pub/sub channel; the probe reaches this
//! node after every publish the read saw and before any later one, and the join is made once it
//! has: Redis's entries up to the read's top, then the mirror's after it.

use std::sync::Arc;

use super::history::{Joining, MAX_PAGE_BYTES, MAX_PAGE_ENTRIES, Source, render};
use super::{Allowance, Bounds, HISTORY_ENTRY_OVERHEAD, HistoryError, Hub, OverBudget, Remote};
use super::{Outgoing, Page, Position, Recovery, RoomKey, SharedHistory};

/// The shared history and a room's bounds there.
type Shared = (Arc<dyn SharedHistory>, Bounds);

impl Hub {
    /// The shared history, when there is one and it can be reached now, and the room's bounds.
    fn shared_history(&self, key: &RoomKey) -> Result<Option<Shared>, HistoryError> {
        let rule = self.history.rule(key).ok_or(HistoryError::NoHistory)?;
        let bounds = Bounds { size: rule.size, ttl: rule.ttl, max_bytes: rule.max_bytes };
        Ok(self.peers.get().and_then(|p| p.shared_history()).filter(|s| s.up()).map(|s| (s, bounds)))
    }

    /// Publishes `item` (a template, see `history::render`) to a room with a history and
    /// returns its position and the members on this node it goes to. Through Redis when it is
    /// shared: the members get it from this node's subscription, in offset order with every
    /// other node's publishes.
    pub(crate) async fn history_publish(
        &self,
        key: &RoomKey,
        item: Outgoing,
        except: Option<u64>,
        allowance: Allowance,
    ) -> Result<(u32, Position), HistoryError> {
        if let Some((shared, bounds)) = self.shared_history(key)? {
            if item.payload_len() + HISTORY_ENTRY_OVERHEAD > bounds.max_bytes {
                return Err(HistoryError::TooLarge);
            }
            let members = self.rooms.count(key);
            if !allowance.covers(members, item.payload_len()) {
                return Err(HistoryError::OverBudget(OverBudget { members }));
            }
            if let Ok(position) = shared.publish(key.clone(), bounds, item.clone(), except).await {
                self.metrics.publishes.inc();
                return Ok((u32::try_from(members).unwrap_or(u32::MAX), position));
            }
            tracing::debug!(room = &*key.name, "history: Redis out of reach; publishing with this node's history");
        }
        if self.peers.get().is_some_and(|p| p.shared_history().is_some()) {
            self.metrics.history.local_publishes.inc();
        }
        self.publish_kept(key, item, except, allowance).map(|(d, p)| (d.queued, p))
    }

    /// Joins a room with a history and queues what the connection missed after `after` (see
    /// the module's notes for the seam).
    pub(crate) async fn history_join(
        &self,
        j: &Joining<'_>,
        after: Option<&Position>,
    ) -> Result<Recovery, HistoryError> {
        let Some((shared, bounds)) = self.shared_history(j.key)? else {
            return self.join_recovering(j, after, Source::Own);
        };
        if let Some(after) = after
            && let Some(recovery) = self.join_mirrored(j, after)?
        {
            return Ok(recovery);
        }
        // As much as the replay could take (the call's budget, the room's size): more entries
        // missed than that cannot be recovered anyway.
        let limit = if after.is_some() { bounds.size.min(j.allowance.copies as usize).max(1) } else { 0 };
        match shared.read(j.key.clone(), bounds, after.map(|a| a.offset), limit, after.is_some()).await {
            Ok(remote) => self.join_from_remote(j, after, remote),
            Err(_) => self.join_recovering(j, after, Source::Own),
        }
    }

    /// Up to `limit` entries (capped at a page) after `after` (`None`, or a position of
    /// another epoch or in the future: from the oldest kept).
    pub(crate) async fn history_read(
        &self,
        key: &RoomKey,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Page, HistoryError> {
        let Some((shared, bounds)) = self.shared_history(key)? else {
            return self.history_read_local(key, after, limit);
        };
        let limit = limit.min(MAX_PAGE_ENTRIES);
        let mut remote = shared.read(key.clone(), bounds, after.map(|a| a.offset), limit, false).await;
        // A position Redis cannot continue from: the oldest kept instead, as on one node.
        if let (Ok(r), Some(a)) = (&remote, after)
            && (*r.epoch != *a.epoch || a.offset > r.top)
        {
            remote = shared.read(key.clone(), bounds, None, limit, false).await;
        }
        match remote {
            Ok(remote) => Ok(page(remote, after, limit)),
            Err(_) => self.history_read_local(key, after, limit),
        }
    }

    /// The room's current position.
    pub(crate) async fn history_current(&self, key: &RoomKey) -> Result<Position, HistoryError> {
        let Some((shared, bounds)) = self.shared_history(key)? else {
            return self.history_current_local(key);
        };
        match shared.read(key.clone(), bounds, None, 0, false).await {
            Ok(r) => Ok(Position { offset: r.top, epoch: r.epoch }),
            Err(_) => self.history_current_local(key),
        }
    }
}

/// A page of what Redis answered: completed entries up to a page's bytes, and whether they
/// continue right after `after` (from offset 1 without it).
fn page(remote: Remote, after: Option<&Position>, limit: usize) -> Page {
    let first = remote.entries.first().map(|(o, _)| *o);
    let complete = match after {
        Some(a) if *a.epoch == *remote.epoch && a.offset <= remote.top => {
            first.map_or(a.offset == remote.top, |o| o == a.offset + 1)
        }
        Some(_) => false,
        None => first.map_or(remote.top == 0, |o| o == 1),
    };
    let mut entries = Vec::new();
    let mut bytes = 0;
    for (offset, template) in remote.entries {
        let item = render(template, offset, &remote.epoch).to_shared();
        if entries.len() >= limit || (bytes + item.payload_len() > MAX_PAGE_BYTES && !entries.is_empty()) {
            break;
        }
        bytes += item.payload_len();
        entries.push((offset, item));
    }
    let more = entries.last().is_some_and(|(o, _)| *o < remote.top);
    Page { entries, complete, more, top: Position { offset: remote.top, epoch: remote.epoch } }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn remote(epoch: &str, top: u64, offsets: &[u64]) -> Remote {
        let entries = offsets.iter().map(|&o| (o, Outgoing::Text(Bytes::from_static(b"m\x01o")))).collect::<Vec<_>>();
        Remote { epoch: Arc::from(epoch), top, entries }
    }

    fn at(offset: u64, epoch: &str) -> Position {
        Position { offset, epoch: Arc::from(epoch) }
    }

    #[test]
    fn a_read_continues_only_from_a_position_it_has_everything_after() {
        assert!(remote("e", 5, &[3, 4, 5]).continues(&at(2, "e")));
        assert!(remote("e", 5, &[]).continues(&at(5, "e")), "nothing missed");
        assert!(!remote("e", 5, &[4, 5]).continues(&at(2, "e")), "offset 3 is gone");
        assert!(!remote("e", 5, &[3, 5]).continues(&at(2, "e")), "a hole");
        assert!(!remote("e", 5, &[3, 4]).continues(&at(2, "e")), "cut short of the top");
        assert!(!remote("e", 5, &[3, 4, 5]).continues(&at(2, "f")), "another epoch");
        assert!(!remote("e", 5, &[]).continues(&at(6, "e")), "from the future");
    }

    #[test]
    fn pages_say_whether_they_continue_and_complete_the_templates() {
        let p = page(remote("e", 5, &[3, 4, 5]), Some(&at(2, "e")), 2);
        assert!(p.complete && p.more);
        assert_eq!(p.entries.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [3, 4]);
        assert!(matches!(&p.entries[0].1, Outgoing::Shared { msg, .. } if &msg.payload[..] == b"m3"));
        assert!(!page(remote("e", 5, &[4, 5]), Some(&at(2, "e")), 10).complete, "a gap");
        assert!(page(remote("e", 0, &[]), None, 10).complete, "an empty room");
        assert!(!page(remote("e", 5, &[4, 5]), None, 10).complete, "the oldest are gone");
        let last = page(remote("e", 5, &[4, 5]), None, 10);
        assert!(!last.more);
    }
}
