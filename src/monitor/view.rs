//! The cluster as the monitor last saw it: an immutable snapshot the router reads without locks,
//! and the pure functions that derive it from probe samples (lag in bytes and time, eligibility
//! with hysteresis, which node is primary).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A WAL position (`pg_lsn`) as a byte offset.
pub type Lsn = u64;

/// Parses PostgreSQL's `X/Y` text form of a `pg_lsn`.
pub fn parse_lsn(text: &str) -> Option<Lsn> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some((hi << 32) | lo)
}

/// Formats an LSN as PostgreSQL does (`16/B374D848`).
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// What one probe of one node returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Instant,
    pub in_recovery: bool,
    /// Primary: current WAL write position. Replica: last replayed position.
    pub lsn: Lsn,
    pub timeline: Option<u32>,
}

/// Which node takes writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Primary {
    /// Exactly one reachable node is out of recovery.
    Known(usize),
    /// No reachable node is out of recovery.
    Missing,
    /// Several nodes claim to be primary: writes are refused until one steps down.
    Conflict(Vec<usize>),
}

/// One node in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    /// The last probe succeeded.
    pub reachable: bool,
    /// Observed role: Some(true) = in recovery (replica), Some(false) = primary.
    pub in_recovery: Option<bool>,
    /// Highest replay LSN seen on this replica (never moves backwards).
    pub replay_lsn: Option<Lsn>,
    pub lag_bytes: u64,
    pub lag_time: Duration,
    /// Over the lag limits (with hysteresis): takes no new reads.
    pub lagging: bool,
    pub timeline: Option<u32>,
}

/// An immutable picture of the cluster, replaced as a whole after every probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// False until every node has been probed once: until then the configured roles are used.
    pub observed: bool,
    pub primary: Primary,
    pub primary_lsn: Option<Lsn>,
    pub nodes: Vec<NodeView>,
}

impl ClusterView {
    /// The view before any probe: configured roles, nothing lagging.
    pub fn configured(nodes: usize, primary: usize) -> Self {
        ClusterView {
            observed: false,
            primary: Primary::Known(primary),
            primary_lsn: None,
            nodes: vec![NodeView::default(); nodes],
        }
    }
}

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

/// How far back the history reaches; a replica further behind shows at least this lag.
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

    /// How long ago the primary first went past `replay`: the age of the oldest change the
    /// replica has not applied. Zero when it has applied everything the primary had.
    pub fn time_lag(&self, replay: Lsn, now: Instant) -> Duration {
        self.samples
            .iter()
            .find(|(_, lsn)| *lsn > replay)
            .map(|(t, _)| now.saturating_duration_since(*t))
            .unwrap_or_default()
    }
}

/// Which node is primary, from the nodes' own answers.
pub fn observe_primary(nodes: &[NodeView]) -> Primary {
    let primaries: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.reachable && n.in_recovery == Some(false))
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

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("garbage"), None);
        assert_eq!(parse_lsn("1/FFFFFFFFF"), None);
    }

    #[test]
    fn idle_caught_up_replica_has_no_time_lag() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.record(t0, 100);
        h.record(t0 + Duration::from_secs(5), 100);
        // Caught up, and the primary has been idle for a long time: still zero.
        assert_eq!(
            h.time_lag(100, t0 + Duration::from_secs(60)),
            Duration::ZERO
        );
    }

    #[test]
    fn time_lag_is_the_age_of_the_oldest_unapplied_change() {
        let t0 = Instant::now();
        let mut h = LsnHistory::default();
        h.record(t0, 100);
        h.record(t0 + Duration::from_millis(100), 200);
        h.record(t0 + Duration::from_millis(200), 300);
        let now = t0 + Duration::from_millis(500);
        assert_eq!(h.time_lag(100, now), Duration::from_millis(400));
        assert_eq!(h.time_lag(250, now), Duration::from_millis(300));
        assert_eq!(h.time_lag(300, now), Duration::ZERO);
    }

    #[test]
    fn hysteresis_keeps_a_lagging_replica_out_until_well_under_the_limit() {
        let limits = LagLimits {
            max_bytes: 1000,
            max_time: Duration::from_secs(1),
            recover_ratio: 0.5,
        };
        let ms = Duration::from_millis;
        assert!(!limits.lagging(false, 1000, ms(1000)));
        assert!(limits.lagging(false, 1001, ms(0)));
        assert!(limits.lagging(false, 0, ms(1001)));
        // Once out, 800 bytes (under the limit but over half of it) keeps it out.
        assert!(limits.lagging(true, 800, ms(0)));
        assert!(limits.lagging(true, 0, ms(600)));
        assert!(!limits.lagging(true, 500, ms(500)));
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
}
