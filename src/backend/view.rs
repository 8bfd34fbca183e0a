//! The cluster as the monitor last saw it: an immutable snapshot that the monitor publishes and
//! the router and sessions read without locks, and the WAL position type they share.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A WAL position (`pg_lsn`): a byte offset into the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`: before any WAL.
    pub const ZERO: Lsn = Lsn(0);

    /// Parses PostgreSQL's `X/Y` text form of a `pg_lsn` (hexadecimal halves).
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }

    /// WAL bytes from `earlier` up to `self`; 0 when `earlier` is not before `self`.
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Formats as PostgreSQL does: `16/B374D848`.
impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// Text that is not a `pg_lsn`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}")]
pub struct InvalidLsn(pub String);

impl FromStr for Lsn {
    type Err = InvalidLsn;

    fn from_str(text: &str) -> Result<Lsn, InvalidLsn> {
        Lsn::parse(text).ok_or_else(|| InvalidLsn(text.to_owned()))
    }
}

/// Which node takes writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Primary {
    /// Exactly one reachable node is out of recovery.
    Known(usize),
    /// No reachable node is out of recovery.
    Missing,
    /// Several nodes claim to be primary on the newest timeline (or on timelines pgroute cannot
    /// tell apart): writes are refused until one steps down. Reads go on on the replicas.
    Conflict(Vec<usize>),
}

/// One node in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    /// The last probe succeeded.
    pub reachable: bool,
    /// Observed role: Some(true) = in recovery (replica), Some(false) = primary.
    pub in_recovery: Option<bool>,
    /// Replica: highest replay LSN seen (never moves backwards while it stays a replica).
    /// Primary: its flushed WAL position at the last probe.
    pub replay_lsn: Option<Lsn>,
    pub lag_bytes: u64,
    pub lag_time: Duration,
    /// Over the lag limits (with hysteresis): takes no new reads.
    pub lagging: bool,
    /// The node's current timeline, as last probed.
    pub timeline: Option<u32>,
    /// On a timeline older than the newest one pgroute has seen in the cluster: the node's
    /// history forked off (or has not yet followed) the current primary's. It takes no reads,
    /// and, if it claims to be primary, no writes either: it is [fenced](NodeView::fenced).
    pub old_timeline: bool,
}

impl NodeView {
    /// Claims to be primary on an old timeline: takes no writes and no reads until it reports
    /// being in recovery again.
    pub fn fenced(&self) -> bool {
        self.old_timeline && self.in_recovery == Some(false)
    }

    /// An observed replica that may take reads now: reachable, in recovery, on the newest
    /// timeline, within the lag limits.
    pub fn takes_reads(&self) -> bool {
        self.reachable && self.in_recovery == Some(true) && !self.old_timeline && !self.lagging
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(Lsn::parse("16/B374D848"), Some(Lsn(0x16_B374_D848)));
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!("0/0".parse(), Ok(Lsn::ZERO));
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
        assert_eq!(
            "FFFFFFFF/FFFFFFFF".parse::<Lsn>().map(|l| l.0),
            Ok(u64::MAX)
        );
        assert_eq!(Lsn::parse(" 0/16B3748 "), Some(Lsn(0x16B_3748)));
        for bad in [
            "garbage",
            "1/FFFFFFFFF",
            "100000000/0",
            "/1",
            "1/",
            "-1/0",
            "1/2/3",
        ] {
            assert_eq!(Lsn::parse(bad), None, "{bad:?}");
            assert_eq!(bad.parse::<Lsn>(), Err(InvalidLsn(bad.to_owned())));
        }
    }

    #[test]
    fn lsns_order_as_wal_positions() {
        assert!(Lsn(0x1_0000_0000) > Lsn(0xFFFF_FFFF));
        assert!(Lsn::parse("1/0") > Lsn::parse("0/FFFFFFFF"));
        assert_eq!(Lsn(300).bytes_since(Lsn(100)), 200);
        assert_eq!(Lsn(100).bytes_since(Lsn(300)), 0);
    }
}
