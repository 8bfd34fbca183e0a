//! Routing policy: from a statement's class and the cluster's state to a [`Route`].
//!
//! The decision itself ([`pick_replica`]) is a pure function over candidates so that lag limits
//! and read-your-writes can be added as filters on the candidate list without touching it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_postgres::error::SqlState;

use crate::backend::view::{ClusterView, NodeView, Primary};
use crate::backend::Cluster;
use crate::classify::Target;
use crate::config::{Balance, Role, WhenAllLagging};

/// Where a unit of work (a Query, or an extended batch up to Sync) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Primary(usize),
    Replica(usize),
}

impl Route {
    pub fn node(self) -> usize {
        match self {
            Route::Primary(n) | Route::Replica(n) => n,
        }
    }
}

/// A replica that may take a read, with what balancing needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub node: usize,
    pub weight: u32,
    pub outstanding: usize,
    /// When this replica last got an executing unit (a router sequence number): among equally
    /// loaded replicas the one served longest ago wins, so even one client's sequential reads
    /// alternate, and a replica back from an outage takes its turn without being flooded.
    pub last_served: u64,
}

/// Chooses among eligible replicas. `tick` drives round robin; `random` is a uniform draw used by
/// [`Balance::Random`] and to break ties between equally loaded replicas (a rotating tie-break
/// would fall into step with clients that send two units per statement).
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
            let start = (random % n as u64) as usize;
            (0..n)
                .map(|i| &cands[(start + i) % n])
                .filter(|c| c.weight > 0)
                // a/wa < b/wb  <=>  a*wb < b*wa: compare load per unit of weight without floats.
                .min_by(|a, b| {
                    let la = a.outstanding as u128 * u128::from(b.weight);
                    let lb = b.outstanding as u128 * u128::from(a.weight);
                    la.cmp(&lb).then(a.last_served.cmp(&b.last_served))
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

/// Why a unit of work has nowhere to go. Returned at once: a client never hangs on routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no primary is available: no reachable node accepts writes")]
    NoPrimary,
    #[error(
        "writes refused: several nodes claim to be primary ({0}); waiting for one to step down"
    )]
    SplitBrain(String),
    #[error("every replica lags beyond the configured limits (lag.when_all_lagging = \"error\")")]
    AllLagging,
}

impl RouteError {
    pub fn sqlstate(&self) -> SqlState {
        // 57P03 cannot_connect_now: the cluster cannot serve this right now; retrying later may work.
        SqlState::CANNOT_CONNECT_NOW
    }
}

/// The router: reads the cluster's live state and applies the balancing policy.
#[derive(Debug)]
pub struct Router {
    cluster: Arc<Cluster>,
    balance: Balance,
    when_all_lagging: WhenAllLagging,
    tick: AtomicU64,
}

impl Router {
    pub fn new(cluster: Arc<Cluster>, balance: Balance, when_all_lagging: WhenAllLagging) -> Self {
        Router {
            cluster,
            balance,
            when_all_lagging,
            tick: AtomicU64::new(0),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The node that takes writes now.
    pub fn primary(&self) -> Result<usize, RouteError> {
        let view = self.cluster.view();
        match &view.primary {
            Primary::Known(n) => Ok(*n),
            Primary::Missing => Err(RouteError::NoPrimary),
            Primary::Conflict(nodes) => Err(RouteError::SplitBrain(self.names(nodes))),
        }
    }

    fn names(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .filter_map(|n| self.cluster.nodes.get(*n))
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Route for a unit of work of class `target`, skipping the nodes in `exclude` (nodes that
    /// just failed for this unit) and replicas that `usable` rejects (read-your-writes).
    ///
    /// `counts` says whether the unit executes anything: only those advance the round-robin
    /// position, so a driver that describes a statement and then executes it (two units) still
    /// spreads its executions over every replica.
    pub fn route(
        &self,
        target: Target,
        exclude: &[usize],
        usable: &dyn Fn(&NodeView) -> bool,
        counts: bool,
    ) -> Result<Route, RouteError> {
        if target == Target::Write {
            return self.primary().map(Route::Primary);
        }
        let view = self.cluster.view();
        let is_replica = |id: usize, nv: &NodeView| match view.observed {
            true => nv.reachable && nv.in_recovery == Some(true),
            false => self.cluster.nodes[id].configured_role == Role::Replica,
        };
        let mut any_up = false;
        let mut held_back_by_ryw = false;
        let mut cands = Vec::with_capacity(view.nodes.len());
        for (node, nv) in self.cluster.nodes.iter().zip(view.nodes.iter()) {
            if !is_replica(node.id, nv)
                || !node.is_up()
                || node.weight == 0
                || exclude.contains(&node.id)
            {
                continue;
            }
            any_up = true;
            held_back_by_ryw |= !nv.lagging && !usable(nv);
            if !nv.lagging && usable(nv) {
                cands.push(Candidate {
                    node: node.id,
                    weight: node.weight,
                    outstanding: node.outstanding(),
                    last_served: node.last_served(),
                });
            }
        }
        let tick = if counts {
            self.tick.fetch_add(1, Ordering::Relaxed)
        } else {
            self.tick.load(Ordering::Relaxed)
        };
        let random = if self.balance == Balance::Random {
            rand::random()
        } else {
            0
        };
        if let Some(node) = pick_replica(&cands, self.balance, tick, random) {
            if counts {
                self.cluster.nodes[node].set_last_served(tick + 1);
            }
            tracing::debug!(node, reason = "replica", "read routed");
            return Ok(Route::Replica(node));
        }
        // No replica can be reached at all: the primary serves reads. Replicas that are up but
        // lagging: the configured policy decides.
        if any_up && cands.is_empty() {
            match self.when_all_lagging {
                WhenAllLagging::Error => return Err(RouteError::AllLagging),
                WhenAllLagging::LeastLagged => {
                    if let Some(n) = self.least_lagged(&view, exclude, usable) {
                        tracing::debug!(node = n, reason = "replica:least-lagged", "read routed");
                        return Ok(Route::Replica(n));
                    }
                }
                WhenAllLagging::Primary => {}
            }
        }
        let reason = match (any_up, held_back_by_ryw) {
            (false, _) => "primary:no-replica",
            (true, true) => "primary:ryw",
            (true, false) => "primary:lag",
        };
        tracing::debug!(reason, "read routed");
        self.primary().map(Route::Primary)
    }

    /// The reachable replica with the smallest byte lag (ignoring the lag limits).
    fn least_lagged(
        &self,
        view: &ClusterView,
        exclude: &[usize],
        usable: &dyn Fn(&NodeView) -> bool,
    ) -> Option<usize> {
        view.nodes
            .iter()
            .enumerate()
            .filter(|(i, nv)| {
                nv.reachable
                    && nv.in_recovery == Some(true)
                    && usable(nv)
                    && !exclude.contains(i)
                    && self.cluster.nodes[*i].is_up()
            })
            .min_by_key(|(_, nv)| nv.lag_bytes)
            .map(|(i, _)| i)
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
            last_served: 0,
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
    fn equally_loaded_replicas_alternate_by_use() {
        let mut cands = [c(1, 1, 0), c(2, 1, 0)];
        cands[0].last_served = 5;
        cands[1].last_served = 4;
        assert_eq!(
            pick_replica(&cands, Balance::LeastOutstanding, 0, 0),
            Some(2)
        );
        cands[1].last_served = 6;
        assert_eq!(
            pick_replica(&cands, Balance::LeastOutstanding, 0, 1),
            Some(1)
        );
    }

    #[test]
    fn least_outstanding_breaks_ties_by_the_random_draw() {
        let cands = [c(1, 1, 0), c(2, 1, 0)];
        let a = pick_replica(&cands, Balance::LeastOutstanding, 7, 0);
        let b = pick_replica(&cands, Balance::LeastOutstanding, 7, 1);
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
