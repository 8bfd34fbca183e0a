//! The routing decision: one pure function from what is known about a unit of work, the
//! session, the connection it holds and the cluster to where the unit goes and why.
//!
//! Safety comes first and cannot be overridden: a unit that may write goes to the primary, a
//! transaction or pinned state stays on its connection; only then do read-your-writes, lag and
//! balancing choose among replicas.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::view::{ClusterView, NodeView, Primary};
use crate::classify::Target;
use crate::config::{Balance, ReadOnlyTxnRoute, Role, WhenAllLagging, WhenGroupEmpty};
use crate::consistency::ReadPolicy;

use super::rules::{By, GroupId, GroupSet, RuleId, RuleSet, Steer};
use super::{pick_replica, Candidate, Route, RouteError};

/// Why a unit went where it went. Logs, `SHOW pgroute.last_route` and the `reason` label of
/// `pgroute_units_routed_total` (and later the console) show this same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A read on a replica that meets every requirement.
    Replica,
    /// Not provably a read: the primary.
    Write,
    /// Part of a transaction (or opening one): where the transaction runs.
    Transaction,
    /// A read-only transaction allowed on a replica (`routing.read_only_transactions`).
    ReadOnlyTransaction,
    /// Session state that cannot move keeps the session on its connection.
    Pinned,
    /// `pool.mode = "session"`.
    SessionMode,
    /// An extended-protocol sequence not yet closed by Sync stays on its connection.
    OpenSequence,
    /// Pipelined behind unfinished work on the connection already in use.
    Pipelined,
    /// No replica has replayed the session's writes (or the token it was given) yet.
    ReadYourWrites,
    /// No replica is within the statement's or session's `pgroute.max_lag`.
    Staleness,
    /// Every reachable replica lags beyond the configured limits.
    Lagging,
    /// Every replica lags; `lag.when_all_lagging = "least-lagged"` took the closest one.
    LeastLagged,
    /// No replica can be reached.
    NoReplica,
    /// A routing rule (`[[rules]]`) chose where the read goes.
    Rule(RuleId),
    /// A `pgroute.route` hint or session setting chose where the read goes.
    Hint,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Replica => "replica",
            Reason::Write => "write",
            Reason::Transaction => "transaction",
            Reason::ReadOnlyTransaction => "read-only transaction",
            Reason::Pinned => "pinned",
            Reason::SessionMode => "session mode",
            Reason::OpenSequence => "open extended sequence",
            Reason::Pipelined => "pipelined",
            Reason::ReadYourWrites => "read-your-writes",
            Reason::Staleness => "max lag",
            Reason::Lagging => "replicas lagging",
            Reason::LeastLagged => "least lagged",
            Reason::NoReplica => "no replica",
            Reason::Rule(_) => "rule",
            Reason::Hint => "hint",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What routing needs to know about the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitFacts {
    /// As classified: `Read` only if every statement is provably a read.
    pub target: Target,
    /// The unit is a lone `BEGIN` (`Some(true)`: `READ ONLY`).
    pub begin: Option<bool>,
    /// The unit is a lone `SET TRANSACTION … READ ONLY`.
    pub sets_read_only: bool,
    /// It runs a statement (a batch of only Parse/Describe does not): it advances balancing.
    pub executes: bool,
    /// Where a rule or a hint steers the unit if it is a read.
    pub steer: Steer,
}

impl UnitFacts {
    /// A unit pgroute cannot read, or sends for its own reasons: a write, not steered.
    pub fn write() -> UnitFacts {
        UnitFacts {
            target: Target::Write,
            begin: None,
            sets_read_only: false,
            executes: true,
            steer: Steer::Default,
        }
    }
}

/// What routing needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFacts {
    /// pgroute answered a lone `BEGIN` that goes in front of this unit.
    pub deferred_begin: bool,
    /// `default_transaction_read_only` is on for the session.
    pub read_only_default: bool,
    pub session_mode: bool,
    /// What the session's read-your-writes state and the unit's hints require of a replica.
    pub read: ReadPolicy,
}

/// The connection the session holds, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldFacts {
    pub route: Route,
    /// Why the connection stays with the session whatever comes next, if it does.
    pub kept_for: Option<Reason>,
    /// An extended sequence on it has not been closed by a Sync.
    pub awaiting_sync: bool,
    /// Only replies to pgroute's own statements are still to come on it.
    pub only_hidden_pending: bool,
    /// Only pgroute's LSN capture is still to come on it.
    pub only_capture_pending: bool,
    /// The groups of the node it is on, and whether that node is drained.
    pub node_groups: GroupSet,
    pub node_drain: bool,
}

/// A node as balancing sees it (live counters read by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFacts {
    pub configured_role: Role,
    pub weight: u32,
    /// Not in a backoff window after a failure.
    pub up: bool,
    pub outstanding: usize,
    pub last_served: u64,
    /// Takes no new reads.
    pub drain: bool,
    pub groups: GroupSet,
}

/// The policy: configuration that routing reads (swapped as a whole on reload).
#[derive(Debug, Clone)]
pub struct Policy {
    pub read_only_transactions: ReadOnlyTxnRoute,
    pub balance: Balance,
    pub when_all_lagging: WhenAllLagging,
    /// `consistency.max_wait`: how long a read may wait for a replica to catch up.
    pub max_wait: Duration,
    /// `[lag]` limits, which groups without their own use.
    pub max_bytes: u64,
    pub max_time: Duration,
    pub rules: Arc<RuleSet>,
    /// The groups marked `exclusive`.
    pub exclusive: GroupSet,
}

impl Policy {
    pub fn new(config: &crate::config::Config, rules: Arc<RuleSet>) -> Policy {
        let exclusive = rules
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.exclusive)
            .fold(GroupSet::default(), |set, (i, _)| {
                set.with(GroupId(i as u8))
            });
        Policy {
            read_only_transactions: config.routing.read_only_transactions,
            balance: config.routing.balance,
            when_all_lagging: config.lag.when_all_lagging,
            max_wait: config.consistency.max_wait,
            max_bytes: config.lag.max_bytes.as_u64(),
            max_time: config.lag.max_time,
            rules,
            exclusive,
        }
    }
}

/// Everything one decision reads.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub unit: UnitFacts,
    pub session: SessionFacts,
    pub held: Option<HeldFacts>,
    pub view: &'a ClusterView,
    /// Every node's live counters, in `[[nodes]]` order (may be empty unless the unit is a read
    /// choosing a replica: nothing else reads them).
    pub nodes: &'a [NodeFacts],
    /// Node names, for errors that name nodes.
    pub names: &'a [String],
    /// Nodes that just failed for this unit.
    pub exclude: &'a [usize],
    /// The unit already waited `max_wait` for a replica to catch up.
    pub waited: bool,
    /// Balancing draws: the round-robin position and a uniform random number.
    pub tick: u64,
    pub random: u64,
}

/// Where the unit goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it on the connection the session holds.
    Held(Reason),
    /// The held connection is busy with work the unit must not join: wait for its replies.
    WaitForHeld,
    /// The held connection's open extended sequence (on a replica) must be closed with a Sync
    /// of pgroute's own first; then the unit is routed afresh.
    CloseSequence,
    /// Take a connection to this node.
    Node(Route, Reason),
    /// No replica is fresh enough yet: wait up to `max_wait` for the next cluster view.
    WaitForReplica(Reason),
    /// Nowhere to go: the client gets this error.
    Refuse(RouteError),
}

/// The unit's target once transaction rules apply, and the reason they give, if any.
pub fn transaction_target(
    unit: &UnitFacts,
    session: &SessionFacts,
    policy: &Policy,
) -> (Target, Option<Reason>) {
    let to_replica = policy.read_only_transactions == ReadOnlyTxnRoute::Replica;
    if session.deferred_begin {
        // The transaction's first statement decides where the deferred BEGIN opens it.
        return if unit.sets_read_only && to_replica {
            (Target::Read, Some(Reason::ReadOnlyTransaction))
        } else {
            (Target::Write, Some(Reason::Transaction))
        };
    }
    let read_only_begin = unit
        .begin
        .is_some_and(|read_only| read_only || session.read_only_default);
    match (read_only_begin, to_replica) {
        (true, false) => (Target::Write, Some(Reason::Transaction)),
        (true, true) => (Target::Read, Some(Reason::ReadOnlyTransaction)),
        _ if unit.begin.is_some() => (unit.target, Some(Reason::Transaction)),
        _ => (unit.target, None),
    }
}

/// The routing decision.
pub fn decide(f: &Facts, policy: &Policy) -> Decision {
    let (target, txn_reason) = transaction_target(&f.unit, &f.session, policy);
    if let Some(held) = &f.held {
        if let Some(d) = on_held(f, held, target, policy) {
            return d;
        }
    }
    if f.session.session_mode {
        return to_primary(f, Reason::SessionMode);
    }
    if target == Target::Write {
        return to_primary(f, txn_reason.unwrap_or(Reason::Write));
    }
    if let Steer::Primary(by) = f.unit.steer {
        return to_primary(f, reason_by(by));
    }
    match f.session.read {
        ReadPolicy::Primary => to_primary(f, Reason::ReadYourWrites),
        ReadPolicy::Replica { .. } => match f.unit.steer {
            Steer::Group(group, by) => group_read(f, policy, group, reason_by(by)),
            Steer::Replica(by) => read(f, policy, Pool::Shared, Some(reason_by(by))),
            _ => read(f, policy, Pool::Shared, txn_reason),
        },
    }
}

fn reason_by(by: By) -> Reason {
    match by {
        By::Rule(id) => Reason::Rule(id),
        By::Hint => Reason::Hint,
    }
}

/// The replicas a read may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// Those outside exclusive groups.
    Shared,
    /// A group's, with its lag limits (None: the `[lag]` ones).
    Group(GroupId, Option<(u64, Duration)>),
}

impl Pool {
    fn admits(self, node: &NodeFacts, policy: &Policy) -> bool {
        match self {
            Pool::Shared => !node.groups.intersects(policy.exclusive),
            Pool::Group(g, _) => node.groups.contains(g),
        }
    }

    /// Over the lag limits that apply to reads from this pool.
    fn lagging(self, nv: &NodeView) -> bool {
        match self {
            Pool::Group(_, Some((bytes, time))) => nv.lag_bytes > bytes || nv.lag_time > time,
            _ => nv.lagging,
        }
    }
}

/// A read routed to a group: one of its replicas, else what its `when_empty` says.
fn group_read(f: &Facts, policy: &Policy, group: GroupId, reason: Reason) -> Decision {
    let Some(g) = policy.rules.groups.get(usize::from(group.0)) else {
        return read(f, policy, Pool::Shared, None);
    };
    let limits = (g.max_bytes.is_some() || g.max_time.is_some()).then(|| {
        (
            g.max_bytes.unwrap_or(policy.max_bytes),
            g.max_time.unwrap_or(policy.max_time),
        )
    });
    let pool = Pool::Group(group, limits);
    let found = eligible(f, policy, pool);
    if let Some(node) = pick_replica(&found.cands, policy.balance, f.tick, f.random) {
        return Decision::Node(Route::Replica(node), reason);
    }
    if Eligible::wait_may_help(f, policy) {
        return Decision::WaitForReplica(found.reason());
    }
    match g.when_empty {
        WhenGroupEmpty::Primary => to_primary(f, found.reason()),
        WhenGroupEmpty::Replicas => read(f, policy, Pool::Shared, None),
        WhenGroupEmpty::Error => Decision::Refuse(RouteError::GroupEmpty(g.name.to_string())),
    }
}

/// The replicas of a pool that may take the read, and why others could not.
struct Eligible {
    cands: Vec<Candidate>,
    /// A replica of the pool is reachable and not drained.
    any_up: bool,
    /// Why a replica within the lag limits could not take the read.
    held_back: Option<Reason>,
}

impl Eligible {
    /// Why no replica took the read.
    fn reason(&self) -> Reason {
        match (self.any_up, self.held_back) {
            (false, _) => Reason::NoReplica,
            (true, Some(why)) => why,
            (true, None) => Reason::Lagging,
        }
    }

    /// Waiting helps a read that needs a replica to reach the session's LSN.
    fn wait_may_help(f: &Facts, policy: &Policy) -> bool {
        let min_lsn = match f.session.read {
            ReadPolicy::Replica { min_lsn, .. } => min_lsn,
            ReadPolicy::Primary => Default::default(),
        };
        min_lsn > Default::default() && !f.waited && !policy.max_wait.is_zero()
    }
}

fn eligible(f: &Facts, policy: &Policy, pool: Pool) -> Eligible {
    let view = f.view;
    let mut found = Eligible {
        cands: Vec::with_capacity(view.nodes.len()),
        any_up: false,
        held_back: None,
    };
    for (id, (node, nv)) in f.nodes.iter().zip(view.nodes.iter()).enumerate() {
        if !is_replica(view, node, nv)
            || !node.up
            || node.weight == 0
            || node.drain
            || !pool.admits(node, policy)
            || f.exclude.contains(&id)
        {
            continue;
        }
        found.any_up = true;
        if pool.lagging(nv) {
            continue;
        }
        match freshness(&f.session.read, nv) {
            Some(why) => found.held_back = found.held_back.or(Some(why)),
            None => found.cands.push(Candidate {
                node: id,
                weight: node.weight,
                outstanding: node.outstanding,
                last_served: node.last_served,
            }),
        }
    }
    found
}

/// Whether a unit joins, waits for, or leaves the connection the session holds.
fn on_held(f: &Facts, held: &HeldFacts, target: Target, policy: &Policy) -> Option<Decision> {
    let node = held.route.node();
    if f.view.nodes.get(node).is_some_and(NodeView::fenced) {
        // Fenced while the session held it (a transaction, pinned state): nothing more goes
        // there, not even the unit that would end the transaction.
        let name = f.names.get(node).cloned().unwrap_or_default();
        return Some(Decision::Refuse(RouteError::Fenced(name)));
    }
    let on_replica = matches!(held.route, Route::Replica(_));
    if held.awaiting_sync && target == Target::Write && on_replica {
        return Some(Decision::CloseSequence);
    }
    if let Some(reason) = held.kept_for {
        return Some(Decision::Held(reason));
    }
    // Pipelined behind unfinished work outside a transaction.
    Some(match (target, held.route) {
        (Target::Write, Route::Primary(_)) => Decision::Held(Reason::Pipelined),
        (Target::Write, Route::Replica(_)) => Decision::WaitForHeld,
        // When all that is pending is pgroute's own work (parameter replay, read-back), the
        // read waits for it and is then routed like any other. For the LSN capture that only
        // pays when reads may wait for a replica to catch up (without it, a read right after
        // a write goes to the primary anyway).
        (Target::Read, Route::Primary(_)) => {
            let may_wait = !policy.max_wait.is_zero();
            if held.only_hidden_pending && (may_wait || !held.only_capture_pending) {
                Decision::WaitForHeld
            } else {
                Decision::Held(Reason::Pipelined)
            }
        }
        // A replica may serve the read only if it meets the read's own requirements and is
        // one the read may be steered to.
        (Target::Read, Route::Replica(node)) => {
            let fresh = f
                .view
                .nodes
                .get(node)
                .is_some_and(|nv| freshness(&f.session.read, nv).is_none());
            let steered_here = !held.node_drain
                && match f.unit.steer {
                    Steer::Primary(_) => false,
                    Steer::Group(g, _) => held.node_groups.contains(g),
                    Steer::Replica(_) | Steer::Default => {
                        !held.node_groups.intersects(policy.exclusive)
                    }
                };
            if fresh && steered_here {
                Decision::Held(Reason::Pipelined)
            } else {
                Decision::WaitForHeld
            }
        }
    })
}

/// Why a replica cannot serve the read (None: it can).
fn freshness(read: &ReadPolicy, nv: &NodeView) -> Option<Reason> {
    match read {
        ReadPolicy::Primary => Some(Reason::ReadYourWrites),
        ReadPolicy::Replica { min_lsn, max_lag } => {
            if nv.replay_lsn.unwrap_or_default() < *min_lsn {
                Some(Reason::ReadYourWrites)
            } else if max_lag.is_some_and(|m| nv.lag_time > m) {
                Some(Reason::Staleness)
            } else {
                None
            }
        }
    }
}

/// The primary, or why there is none to take the unit.
fn to_primary(f: &Facts, reason: Reason) -> Decision {
    match &f.view.primary {
        Primary::Known(n) => Decision::Node(Route::Primary(*n), reason),
        Primary::Missing => Decision::Refuse(RouteError::NoPrimary),
        Primary::Conflict(nodes) => {
            let names: Vec<&str> = nodes
                .iter()
                .filter_map(|n| f.names.get(*n))
                .map(String::as_str)
                .collect();
            Decision::Refuse(RouteError::SplitBrain(names.join(", ")))
        }
    }
}

/// A read outside a held connection: a replica of the pool meeting its requirements, balanced
/// by the policy; else what `lag.when_all_lagging` and `consistency.max_wait` say.
fn read(f: &Facts, policy: &Policy, pool: Pool, steered: Option<Reason>) -> Decision {
    let found = eligible(f, policy, pool);
    if let Some(node) = pick_replica(&found.cands, policy.balance, f.tick, f.random) {
        return Decision::Node(Route::Replica(node), steered.unwrap_or(Reason::Replica));
    }
    // Replicas up but none eligible (lagging or not fresh enough): the configured policy.
    if found.any_up && found.held_back.is_none() {
        match policy.when_all_lagging {
            WhenAllLagging::Error => return Decision::Refuse(RouteError::AllLagging),
            WhenAllLagging::LeastLagged => {
                if let Some(n) = least_lagged(f, policy, pool) {
                    return Decision::Node(Route::Replica(n), Reason::LeastLagged);
                }
            }
            WhenAllLagging::Primary => {}
        }
    }
    if Eligible::wait_may_help(f, policy) {
        return Decision::WaitForReplica(found.reason());
    }
    to_primary(f, found.reason())
}

/// Observed in recovery on the newest timeline (or, before the monitor's first round,
/// configured as a replica and not seen on an old timeline). Never a fenced node.
fn is_replica(view: &ClusterView, node: &NodeFacts, nv: &NodeView) -> bool {
    if nv.old_timeline {
        false
    } else if view.observed {
        nv.reachable && nv.in_recovery == Some(true)
    } else {
        node.configured_role == Role::Replica
    }
}

/// The reachable replica with the smallest byte lag (ignoring the lag limits) that meets the
/// read's own requirements.
fn least_lagged(f: &Facts, policy: &Policy, pool: Pool) -> Option<usize> {
    f.view
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, nv)| {
            nv.reachable
                && nv.in_recovery == Some(true)
                && !nv.old_timeline
                && freshness(&f.session.read, nv).is_none()
                && !f.exclude.contains(i)
                && f.nodes
                    .get(*i)
                    .is_some_and(|n| n.up && !n.drain && pool.admits(n, policy))
        })
        .min_by_key(|(_, nv)| nv.lag_bytes)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests;
