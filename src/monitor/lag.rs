//! The pure arithmetic of lag: turning a replica's replay position into a time lag from the
//! primary's sampled history, eligibility with hysteresis, and which node is primary.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backend::view::{Lsn, NodeView, Primary};

/// Lag limits and their hysteresis.
#[derive(Debug, Clone, Copy)]
pub struct LagLimits {
    pub max_bytes: u64,
    pub max_time: Duration,
    /// A lagging replica returns once under `recover_ratio` × the limits.
    pub recover_ratio: f64,
}

impl LagLimits {
    /// Whether a replica is over the limits, given whether it was already.
    pub fn lagging(&self, was_lagging: bool, bytes: u64, time: Duration) -> bool {
        if was_lagging {
            let bytes_ok = (bytes as f64) <= self.max_bytes as f64 * self.recover_ratio;
            let time_ok = time.as_secs_f64() <= self.max_time.as_secs_f64() * self.recover_ratio;
            !(bytes_ok && time_ok)
        } else {
            bytes > self.max_bytes || time > self.max_time
        }
    }
}

/// The primary's recent WAL positions, for turning a replica's replay LSN into a time lag.
#[derive(Debug, Default)]
pub struct LsnHistory {
    samples: VecDeque<(Instant, Lsn)>,
}

/// How far back the history reaches; a replica further behind shows the age of the oldest
/// sample kept (about this long while the primary writes).
const HISTORY_WINDOW: Duration = Duration::from_secs(300);

impl LsnHistory {
    pub fn record(&mut self, at: Instant, lsn: Lsn) {
        if self.samples.back().is_some_and(|(_, last)| *last == lsn) {
            // Only changes matter: the first time the primary reached an LSN is kept.
            return;
        }
        self.samples.push_back((at, lsn));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > HISTORY_WINDOW)
            && self.samples.len() > 1
        {
            self.samples.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The last position the primary was seen at.
    pub fn latest(&self) -> Option<Lsn> {
        self.samples.back().map(|(_, lsn)| *lsn)
    }

    /// How long before `measured` the primary was first seen past `replay` by at least one
    /// whole WAL record: the age, when the replica was measured at `replay`, of the oldest
    /// change it had not applied. Zero when it had applied everything the primary was seen
    /// with before then, however long ago the primary last wrote.
    ///
    /// A position the primary was first seen at after `measured` says nothing about the
    /// replica: it may well have replayed it by now.
    pub fn time_lag(&self, replay: Lsn, measured: Instant) -> Duration {
        self.samples
            .iter()
            .find(|(_, lsn)| lsn.bytes_since(replay) >= MIN_RECORD_BYTES)
            .map(|(t, _)| measured.saturating_duration_since(*t))
            .unwrap_or_default()
    }
}

/// The smallest WAL record: `SizeOfXLogRecord`, a record header with no data (every record
/// starts MAXALIGNed, so the next record ends at least this far after the previous one). A
/// replica less than this short of a position the primary reported has replayed every record
/// up to it; what is left is padding or a page header, which the replica's replay position
/// (the end of the last record applied) never covers.
pub const MIN_RECORD_BYTES: u64 = 24;

/// Whether a node is on an older timeline than `newest`, the newest timeline pgroute has seen
/// any node of the cluster on. Such a node's history forked off the current one (an old
/// primary started again as a primary) or has not followed it yet (a replica not yet repointed):
/// a primary there must not take writes, and a replica there may replay WAL that the current
/// primary never wrote, with LSNs that compare as if it had. A node or a cluster whose timeline
/// is unknown is not on an old one: there is nothing to decide with.
pub fn on_old_timeline(nv: &NodeView, newest: Option<u32>) -> bool {
    matches!((nv.timeline, newest), (Some(t), Some(n)) if t < n)
}

/// Which node is primary, from the nodes' own answers (with `old_timeline` already set).
///
/// | claimants (reachable, out of recovery)        | primary                          |
/// |-----------------------------------------------|----------------------------------|
/// | none                                          | `Missing`                        |
/// | one on the newest timeline, others older      | `Known`: the older are fenced    |
/// | only ones on old timelines                    | `Missing`: all fenced            |
/// | several on the newest (or unknown) timeline   | `Conflict`                       |
pub fn observe_primary(nodes: &[NodeView]) -> Primary {
    let primaries: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.reachable && n.in_recovery == Some(false) && !n.old_timeline)
        .map(|(i, _)| i)
        .collect();
    match primaries.len() {
        0 => Primary::Missing,
        1 => Primary::Known(primaries[0]),
        _ => Primary::Conflict(primaries),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn idle_caught_up_replica_has_no_time_lag() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.record(t0, Lsn(100));
        h.record(t0 + Duration::from_secs(5), Lsn(100));
        // Caught up, and the primary has been idle for a long time: still zero.
        assert_eq!(
            h.time_lag(Lsn(100), t0 + Duration::from_secs(60)),
            Duration::ZERO
        );
    }

    #[test]
    fn time_lag_is_the_age_of_the_oldest_unapplied_change_when_measured() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.record(t0, Lsn(100));
        h.record(t0 + 100 * MS, Lsn(200));
        h.record(t0 + 200 * MS, Lsn(300));
        let measured = t0 + 500 * MS;
        assert_eq!(h.time_lag(Lsn(100), measured), 400 * MS);
        assert_eq!(h.time_lag(Lsn(250), measured), 300 * MS);
        assert_eq!(h.time_lag(Lsn(300), measured), Duration::ZERO);
        // Measured before the primary was seen past it: no evidence of lag.
        assert_eq!(h.time_lag(Lsn(100), t0 + 50 * MS), Duration::ZERO);
        assert_eq!(h.time_lag(Lsn(200), t0 + 150 * MS), Duration::ZERO);
    }

    #[test]
    fn less_than_a_record_short_of_the_primary_is_no_lag() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.record(t0, Lsn(1000));
        let later = t0 + Duration::from_secs(10);
        // 8 bytes of padding the replica's replay position never covers: caught up.
        assert_eq!(h.time_lag(Lsn(992), later), Duration::ZERO);
        assert_eq!(h.time_lag(Lsn(1000 - 23), later), Duration::ZERO);
        // Room for a whole record: that record has not been applied.
        assert_eq!(h.time_lag(Lsn(1000 - 24), later), Duration::from_secs(10));
    }

    #[test]
    fn history_keeps_the_first_time_each_position_was_seen_within_its_window() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.record(t0, Lsn(100));
        h.record(t0 + 100 * MS, Lsn(200));
        h.record(t0 + 900 * MS, Lsn(200));
        assert_eq!(h.time_lag(Lsn(100), t0 + 1000 * MS), 900 * MS);
        // Samples older than the window fall out; a replica behind all that is kept counts
        // from the oldest one left.
        h.record(t0 + HISTORY_WINDOW / 2, Lsn(300));
        h.record(t0 + HISTORY_WINDOW + Duration::from_secs(1), Lsn(400));
        let now = t0 + HISTORY_WINDOW + Duration::from_secs(2);
        let oldest_kept = now - (t0 + HISTORY_WINDOW / 2);
        assert_eq!(h.time_lag(Lsn(0), now), oldest_kept);
        h.clear();
        assert_eq!(h.time_lag(Lsn(0), now), Duration::ZERO);
    }

    #[test]
    fn hysteresis_keeps_a_lagging_replica_out_until_well_under_the_limit() {
        let limits = LagLimits {
            max_bytes: 1000,
            max_time: Duration::from_secs(1),
            recover_ratio: 0.5,
        };
        assert!(!limits.lagging(false, 1000, 1000 * MS));
        assert!(limits.lagging(false, 1001, Duration::ZERO));
        assert!(limits.lagging(false, 0, 1001 * MS));
        // Once out, 800 bytes (under the limit but over half of it) keeps it out.
        assert!(limits.lagging(true, 800, Duration::ZERO));
        assert!(limits.lagging(true, 0, 600 * MS));
        assert!(!limits.lagging(true, 500, 500 * MS));
    }

    #[test]
    fn primary_is_the_one_reachable_node_out_of_recovery() {
        let node = |reachable, rec| NodeView {
            reachable,
            in_recovery: Some(rec),
            ..Default::default()
        };
        assert_eq!(
            observe_primary(&[node(true, false), node(true, true)]),
            Primary::Known(0)
        );
        assert_eq!(
            observe_primary(&[node(false, false), node(true, true)]),
            Primary::Missing
        );
        assert_eq!(
            observe_primary(&[node(true, false), node(true, false), node(true, true)]),
            Primary::Conflict(vec![0, 1])
        );
    }

    #[test]
    fn a_claimant_on_an_old_timeline_is_never_the_primary() {
        let node = |rec, timeline, old_timeline| NodeView {
            reachable: true,
            in_recovery: Some(rec),
            timeline: Some(timeline),
            old_timeline,
            ..Default::default()
        };
        let old = node(false, 1, true);
        assert!(old.fenced() && !old.takes_reads());
        assert_eq!(
            observe_primary(&[old.clone(), node(false, 2, false), node(true, 2, false)]),
            Primary::Known(1)
        );
        assert_eq!(
            observe_primary(&[old, node(true, 2, false)]),
            Primary::Missing,
            "a fenced node does not take over when the newer primary is gone"
        );
        let tl = |t| NodeView {
            timeline: t,
            ..Default::default()
        };
        assert!(on_old_timeline(&tl(Some(1)), Some(2)));
        assert!(!on_old_timeline(&tl(Some(2)), Some(2)));
        assert!(
            !on_old_timeline(&tl(None), Some(2)),
            "unknown: nothing to decide"
        );
        assert!(!on_old_timeline(&tl(Some(1)), None));
    }
}
