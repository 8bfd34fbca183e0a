//! Routing policy: from a statement's class and the cluster's state to a [`Route`].
//!
//! The decision itself ([`pick_replica`]) is a pure function over candidates so that lag limits
//! and read-your-writes can be added as filters on the candidate list without touching it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backend::Cluster;
use crate::classify::Target;
use crate::config::Balance;

/// Where a unit of work (a Query, or an extended batch up to Sync) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Primary,
    Replica(usize),
}

/// A replica that may take a read, with what balancing needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub node: usize,
    pub weight: u32,
    pub outstanding: usize,
}

/// Chooses among eligible replicas. `tick` rotates ties and drives round robin; `random` is a
/// uniform draw in `0..u64::MAX` used by [`Balance::Random`].
pub fn pick_replica(
    cands: &[Candidate],
    balance: Balance,
    tick: u64,
    random: u64,
) -> Option<usize> {
    let total: u64 = cands.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    match balance {
        Balance::RoundRobin => by_weight(cands, tick % total),
        Balance::Random => by_weight(cands, random % total),
        Balance::LeastOutstanding => {
            let n = cands.len();
            let start = (tick % n as u64) as usize;
            (0..n)
                .map(|i| &cands[(start + i) % n])
                .filter(|c| c.weight > 0)
                // a/wa < b/wb  <=>  a*wb < b*wa: compare load per unit of weight without floats.
                .min_by(|a, b| {
                    let la = a.outstanding as u128 * u128::from(b.weight);
                    let lb = b.outstanding as u128 * u128::from(a.weight);
                    la.cmp(&lb)
                })
                .map(|c| c.node)
        }
    }
}

/// The candidate whose weight interval contains `point` (0 ≤ point < total weight).
fn by_weight(cands: &[Candidate], mut point: u64) -> Option<usize> {
    for c in cands {
        let w = u64::from(c.weight);
        if point < w {
            return Some(c.node);
        }
        point -= w;
    }
    None
}

/// The router: reads the cluster's live state and applies the balancing policy.
#[derive(Debug)]
pub struct Router {
    cluster: Arc<Cluster>,
    balance: Balance,
    tick: AtomicU64,
}

impl Router {
    pub fn new(cluster: Arc<Cluster>, balance: Balance) -> Self {
        Router {
            cluster,
            balance,
            tick: AtomicU64::new(0),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Route for a unit of work of class `target`, skipping the nodes in `exclude` (nodes that
    /// just failed for this unit).
    pub fn route(&self, target: Target, exclude: &[usize]) -> Route {
        if target == Target::Write {
            return Route::Primary;
        }
        let cands: Vec<Candidate> = self
            .cluster
            .replicas()
            .filter(|n| n.is_up() && n.weight > 0 && !exclude.contains(&n.id))
            .map(|n| Candidate {
                node: n.id,
                weight: n.weight,
                outstanding: n.outstanding(),
            })
            .collect();
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let random = if self.balance == Balance::Random {
            rand::random()
        } else {
            0
        };
        match pick_replica(&cands, self.balance, tick, random) {
            Some(node) => Route::Replica(node),
            None => Route::Primary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(node: usize, weight: u32, outstanding: usize) -> Candidate {
        Candidate {
            node,
            weight,
            outstanding,
        }
    }

    #[test]
    fn no_candidates_means_no_replica() {
        assert_eq!(pick_replica(&[], Balance::LeastOutstanding, 0, 0), None);
        assert_eq!(pick_replica(&[c(1, 0, 0)], Balance::RoundRobin, 0, 0), None);
    }

    #[test]
    fn round_robin_follows_weights() {
        let cands = [c(1, 1, 0), c(2, 3, 0)];
        let picks: Vec<_> = (0..8)
            .filter_map(|t| pick_replica(&cands, Balance::RoundRobin, t, 0))
            .collect();
        assert_eq!(picks.iter().filter(|n| **n == 1).count(), 2);
        assert_eq!(picks.iter().filter(|n| **n == 2).count(), 6);
    }

    #[test]
    fn least_outstanding_prefers_the_idler_node_per_weight() {
        let cands = [c(1, 1, 3), c(2, 1, 1)];
        assert_eq!(
            pick_replica(&cands, Balance::LeastOutstanding, 0, 0),
            Some(2)
        );
        // Node 1 has twice the weight, so 3 outstanding there is lighter than 2 on node 2.
        let cands = [c(1, 2, 3), c(2, 1, 2)];
        assert_eq!(
            pick_replica(&cands, Balance::LeastOutstanding, 0, 0),
            Some(1)
        );
    }

    #[test]
    fn least_outstanding_rotates_ties() {
        let cands = [c(1, 1, 0), c(2, 1, 0)];
        let a = pick_replica(&cands, Balance::LeastOutstanding, 0, 0);
        let b = pick_replica(&cands, Balance::LeastOutstanding, 1, 0);
        assert_ne!(a, b);
    }

    #[test]
    fn random_stays_within_candidates() {
        let cands = [c(4, 1, 0), c(7, 1, 0)];
        for r in [0, 1, 2, u64::MAX] {
            let n = pick_replica(&cands, Balance::Random, 0, r);
            assert!(matches!(n, Some(4) | Some(7)));
        }
    }
}
