//! Table-driven tests of the routing decision, without a database.
use super::*;
use crate::backend::view::Lsn;

/// Node 0 the primary, nodes 1 and 2 caught-up replicas, all up.
fn view() -> ClusterView {
    let replica = NodeView {
        reachable: true,
        in_recovery: Some(true),
        replay_lsn: Some(Lsn(100)),
        ..NodeView::default()
    };
    ClusterView {
        observed: true,
        primary: Primary::Known(0),
        primary_lsn: Some(Lsn(100)),
        nodes: vec![
            NodeView {
                reachable: true,
                in_recovery: Some(false),
                replay_lsn: Some(Lsn(100)),
                ..NodeView::default()
            },
            replica.clone(),
            replica,
        ],
    }
}

fn nodes() -> Vec<NodeFacts> {
    (0..3)
        .map(|i| NodeFacts {
            configured_role: if i == 0 { Role::Primary } else { Role::Replica },
            weight: 1,
            up: true,
            outstanding: 0,
            last_served: 0,
        })
        .collect()
}

fn policy() -> Policy {
    Policy {
        read_only_transactions: ReadOnlyTxnRoute::Primary,
        balance: Balance::LeastOutstanding,
        when_all_lagging: WhenAllLagging::Primary,
        max_wait: Duration::ZERO,
    }
}

fn unit(target: Target) -> UnitFacts {
    UnitFacts {
        target,
        begin: None,
        sets_read_only: false,
        executes: true,
    }
}

fn session() -> SessionFacts {
    SessionFacts {
        deferred_begin: false,
        read_only_default: false,
        session_mode: false,
        read: ReadPolicy::Replica {
            min_lsn: Lsn::ZERO,
            max_lag: None,
        },
    }
}

/// One case: adjust the defaults, decide.
struct Case {
    unit: UnitFacts,
    session: SessionFacts,
    held: Option<HeldFacts>,
    view: ClusterView,
    nodes: Vec<NodeFacts>,
    names: Vec<String>,
    policy: Policy,
    exclude: Vec<usize>,
    waited: bool,
}

impl Case {
    fn new(target: Target) -> Self {
        Case {
            unit: unit(target),
            session: session(),
            held: None,
            view: view(),
            nodes: nodes(),
            names: vec!["pg1".into(), "pg2".into(), "pg3".into()],
            policy: policy(),
            exclude: Vec::new(),
            waited: false,
        }
    }

    fn decide(&self) -> Decision {
        let facts = Facts {
            unit: self.unit,
            session: self.session,
            held: self.held,
            view: &self.view,
            nodes: &self.nodes,
            names: &self.names,
            exclude: &self.exclude,
            waited: self.waited,
            tick: 0,
            random: 0,
        };
        decide(&facts, &self.policy)
    }
}

fn held(route: Route) -> HeldFacts {
    HeldFacts {
        route,
        kept_for: None,
        awaiting_sync: false,
        only_hidden_pending: false,
        only_capture_pending: false,
    }
}

fn needs_lsn(lsn: u64) -> ReadPolicy {
    ReadPolicy::Replica {
        min_lsn: Lsn(lsn),
        max_lag: None,
    }
}

#[test]
fn writes_go_to_the_primary_and_reads_to_a_replica() {
    assert_eq!(
        Case::new(Target::Write).decide(),
        Decision::Node(Route::Primary(0), Reason::Write)
    );
    assert!(matches!(
        Case::new(Target::Read).decide(),
        Decision::Node(Route::Replica(1 | 2), Reason::Replica)
    ));
}

#[test]
fn no_primary_or_two_primaries_refuse_writes() {
    let mut c = Case::new(Target::Write);
    c.view.primary = Primary::Missing;
    assert_eq!(c.decide(), Decision::Refuse(RouteError::NoPrimary));
    c.view.primary = Primary::Conflict(vec![0, 2]);
    assert_eq!(
        c.decide(),
        Decision::Refuse(RouteError::SplitBrain("pg1, pg3".into()))
    );
}

#[test]
fn reads_fall_back_to_the_primary_with_the_reason() {
    // Every replica down, or marked down after failures, or excluded after failing.
    let mut c = Case::new(Target::Read);
    for nv in &mut c.view.nodes[1..] {
        nv.reachable = false;
    }
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::NoReplica)
    );
    let mut c = Case::new(Target::Read);
    c.nodes[1].up = false;
    c.exclude = vec![2];
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::NoReplica)
    );
    // Lagging.
    let mut c = Case::new(Target::Read);
    for nv in &mut c.view.nodes[1..] {
        nv.lagging = true;
    }
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::Lagging)
    );
    // Not replayed the session's write yet.
    let mut c = Case::new(Target::Read);
    c.session.read = needs_lsn(101);
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::ReadYourWrites)
    );
    // Too stale for the statement's max_lag.
    let mut c = Case::new(Target::Read);
    c.view.nodes[1].lag_time = Duration::from_secs(2);
    c.view.nodes[2].lag_time = Duration::from_secs(3);
    c.session.read = ReadPolicy::Replica {
        min_lsn: Default::default(),
        max_lag: Some(Duration::from_secs(1)),
    };
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::Staleness)
    );
    // Time/session read-your-writes after a write.
    let mut c = Case::new(Target::Read);
    c.session.read = ReadPolicy::Primary;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::ReadYourWrites)
    );
}

#[test]
fn only_a_replica_that_replayed_the_sessions_lsn_serves_its_read() {
    let mut c = Case::new(Target::Read);
    c.view.nodes[1].replay_lsn = Some(Lsn(150));
    c.session.read = needs_lsn(120);
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Replica(1), Reason::Replica)
    );
}

#[test]
fn a_read_may_wait_for_a_replica_to_catch_up_once() {
    let mut c = Case::new(Target::Read);
    c.session.read = needs_lsn(101);
    c.policy.max_wait = Duration::from_millis(50);
    assert_eq!(c.decide(), Decision::WaitForReplica(Reason::ReadYourWrites));
    c.waited = true;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::ReadYourWrites)
    );
}

#[test]
fn when_all_lagging_decides_for_lagging_replicas() {
    let mut c = Case::new(Target::Read);
    for nv in &mut c.view.nodes[1..] {
        nv.lagging = true;
    }
    c.view.nodes[1].lag_bytes = 900;
    c.view.nodes[2].lag_bytes = 300;
    c.policy.when_all_lagging = WhenAllLagging::Error;
    assert_eq!(c.decide(), Decision::Refuse(RouteError::AllLagging));
    c.policy.when_all_lagging = WhenAllLagging::LeastLagged;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Replica(2), Reason::LeastLagged)
    );
}

#[test]
fn transactions_go_to_the_primary_unless_read_only_ones_may_use_replicas() {
    let begin = |read_only| {
        let mut c = Case::new(Target::Write);
        c.unit.begin = Some(read_only);
        c
    };
    assert_eq!(
        begin(false).decide(),
        Decision::Node(Route::Primary(0), Reason::Transaction)
    );
    assert_eq!(
        begin(true).decide(),
        Decision::Node(Route::Primary(0), Reason::Transaction)
    );
    let mut c = begin(true);
    c.policy.read_only_transactions = ReadOnlyTxnRoute::Replica;
    assert!(matches!(
        c.decide(),
        Decision::Node(Route::Replica(_), Reason::ReadOnlyTransaction)
    ));
    // A plain BEGIN under default_transaction_read_only.
    let mut c = begin(false);
    c.policy.read_only_transactions = ReadOnlyTxnRoute::Replica;
    c.session.read_only_default = true;
    assert!(matches!(
        c.decide(),
        Decision::Node(Route::Replica(_), Reason::ReadOnlyTransaction)
    ));
    // A deferred BEGIN opens where its first statement says.
    let mut c = Case::new(Target::Read);
    c.session.deferred_begin = true;
    c.policy.read_only_transactions = ReadOnlyTxnRoute::Replica;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::Transaction),
        "a read that is not SET TRANSACTION READ ONLY opens a read-write transaction"
    );
    c.unit.sets_read_only = true;
    assert!(matches!(
        c.decide(),
        Decision::Node(Route::Replica(_), Reason::ReadOnlyTransaction)
    ));
}

#[test]
fn session_mode_keeps_everything_on_the_primary() {
    let mut c = Case::new(Target::Read);
    c.session.session_mode = true;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::SessionMode)
    );
}

#[test]
fn a_kept_connection_takes_every_unit() {
    for reason in [
        Reason::Transaction,
        Reason::Pinned,
        Reason::SessionMode,
        Reason::OpenSequence,
    ] {
        for target in [Target::Read, Target::Write] {
            let mut c = Case::new(target);
            c.held = Some(HeldFacts {
                kept_for: Some(reason),
                ..held(Route::Primary(0))
            });
            assert_eq!(c.decide(), Decision::Held(reason));
        }
    }
}

#[test]
fn a_write_after_a_flush_ended_read_on_a_replica_closes_that_sequence_first() {
    let mut c = Case::new(Target::Write);
    c.held = Some(HeldFacts {
        awaiting_sync: true,
        kept_for: Some(Reason::OpenSequence),
        ..held(Route::Replica(1))
    });
    assert_eq!(c.decide(), Decision::CloseSequence);
}

#[test]
fn pipelined_units_join_or_wait_for_the_busy_connection() {
    let table = [
        // (target, held route, only hidden pending, only capture pending, max_wait, expected)
        (
            Target::Write,
            Route::Primary(0),
            false,
            false,
            0,
            Some(Reason::Pipelined),
        ),
        (Target::Write, Route::Replica(1), false, false, 0, None),
        (
            Target::Read,
            Route::Primary(0),
            false,
            false,
            0,
            Some(Reason::Pipelined),
        ),
        (Target::Read, Route::Primary(0), true, false, 0, None),
        (
            Target::Read,
            Route::Primary(0),
            true,
            true,
            0,
            Some(Reason::Pipelined),
        ),
        (Target::Read, Route::Primary(0), true, true, 50, None),
        (
            Target::Read,
            Route::Replica(1),
            false,
            false,
            0,
            Some(Reason::Pipelined),
        ),
    ];
    for (target, route, hidden, capture, wait_ms, want) in table {
        let mut c = Case::new(target);
        c.policy.max_wait = Duration::from_millis(wait_ms);
        c.held = Some(HeldFacts {
            only_hidden_pending: hidden,
            only_capture_pending: capture,
            ..held(route)
        });
        let want = want.map_or(Decision::WaitForHeld, Decision::Held);
        assert_eq!(
            c.decide(),
            want,
            "{target:?} on {route:?} hidden={hidden} capture={capture}"
        );
    }
    // A read pipelined on a replica that has not replayed the session's LSN waits.
    let mut c = Case::new(Target::Read);
    c.session.read = needs_lsn(500);
    c.held = Some(held(Route::Replica(1)));
    assert_eq!(c.decide(), Decision::WaitForHeld);
}

#[test]
fn before_the_first_probe_configured_roles_decide() {
    let mut c = Case::new(Target::Read);
    c.view = ClusterView::configured(3, 0);
    assert!(matches!(
        c.decide(),
        Decision::Node(Route::Replica(1 | 2), Reason::Replica)
    ));
}

#[test]
fn balancing_prefers_the_less_busy_replica() {
    let mut c = Case::new(Target::Read);
    c.nodes[1].outstanding = 5;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Replica(2), Reason::Replica)
    );
}
