//! Routing policy: from a unit's class, the session's state and the cluster's state to a
//! [`decision::Decision`] with its [`decision::Reason`].
//!
//! The whole decision ([`decision::decide`]) is a pure function; balancing among eligible
//! replicas ([`pick_replica`]) is another, over candidates. [`Router`] only gathers the live
//! inputs for them.

pub mod decision;
pub mod rules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backend::Cluster;
use crate::config::Balance;
use decision::{Decision, Facts, HeldFacts, NodeFacts, Policy, SessionFacts, UnitFacts};

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

/// Why a unit of work has nowhere to go. Returned at once: a client never hangs on routing
/// (the client sees 57P03, see [`crate::error::Error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no primary is available: no reachable node accepts writes")]
    NoPrimary,
    #[error(
        "writes refused: several nodes claim to be primary ({0}); waiting for one to step down"
    )]
    SplitBrain(String),
    #[error(
        "node {0} is fenced: it claims to be primary on an older timeline than the current primary's"
    )]
    Fenced(String),
    #[error("every replica lags beyond the configured limits (lag.when_all_lagging = \"error\")")]
    AllLagging,
    #[error("no replica of group \"{0}\" can take the read (groups.{0}.when_empty = \"error\")")]
    GroupEmpty(String),
}

/// The router: reads the cluster's live state (the monitor's view and each node's counters)
/// and hands it, with the policy, to [`decision::decide`].
#[derive(Debug)]
pub struct Router {
    cluster: Arc<Cluster>,
    policy: arc_swap::ArcSwap<Policy>,
    tick: AtomicU64,
}

/// The session's part of a routing question.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub unit: UnitFacts,
    pub session: SessionFacts,
    pub held: Option<HeldFacts>,
    /// Nodes that just failed for this unit.
    pub exclude: &'a [usize],
    /// The unit already waited `consistency.max_wait` for a replica.
    pub waited: bool,
}

impl Router {
    pub fn new(cluster: Arc<Cluster>, policy: Policy) -> Self {
        Router {
            cluster,
            policy: arc_swap::ArcSwap::from_pointee(policy),
            tick: AtomicU64::new(0),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The current policy (replaced as a whole by a reload).
    pub fn policy(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// Installs a reloaded policy: units routed from now on follow it.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// Decides where a unit goes. `scratch` is the caller's buffer for the node counters (kept
    /// across calls: no allocation per unit). A read that executes on a replica takes that
    /// replica's turn in the balancing order.
    pub fn decide(&self, q: &Question, scratch: &mut Vec<NodeFacts>) -> Decision {
        let view = self.cluster.view();
        let members = self.cluster.members();
        let policy = self.policy.load();
        scratch.clear();
        // Only a read choosing a replica looks at the nodes' live counters (a lock each).
        let (target, _) = decision::transaction_target(&q.unit, &q.session, &policy);
        let chooses_replica = q.held.is_none()
            && !q.session.session_mode
            && target == crate::classify::Target::Read
            && matches!(
                q.session.read,
                crate::consistency::ReadPolicy::Replica { .. }
            );
        if chooses_replica {
            scratch.extend(members.nodes.iter().map(|n| NodeFacts {
                configured_role: n.configured_role,
                weight: n.weight(),
                up: n.is_up(),
                outstanding: n.outstanding(),
                last_served: n.last_served(),
                drain: n.drained(),
                groups: n.groups(),
            }));
        }
        let random = if policy.balance == Balance::Random {
            rand::random()
        } else {
            0
        };
        let facts = Facts {
            unit: q.unit,
            session: q.session,
            held: q.held,
            view: &view,
            nodes: scratch,
            names: &members.names,
            exclude: q.exclude,
            waited: q.waited,
            tick: self.tick.load(Ordering::Relaxed),
            random,
        };
        let decision = decision::decide(&facts, &policy);
        if let (Decision::Node(Route::Replica(node), _), true) = (&decision, q.unit.executes) {
            let tick = self.tick.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = members.nodes.get(*node) {
                n.set_last_served(tick + 1);
            }
        }
        decision
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
