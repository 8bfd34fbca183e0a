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
            drain: false,
            groups: GroupSet::default(),
        })
        .collect()
}

fn policy() -> Policy {
    Policy {
        read_only_transactions: ReadOnlyTxnRoute::Primary,
        balance: Balance::LeastOutstanding,
        when_all_lagging: WhenAllLagging::Primary,
        max_wait: Duration::ZERO,
        max_bytes: 16_000_000,
        max_time: Duration::from_secs(1),
        rules: Arc::new(RuleSet::default()),
        exclusive: GroupSet::default(),
    }
}

fn unit(target: Target) -> UnitFacts {
    UnitFacts {
        target,
        begin: None,
        sets_read_only: false,
        executes: true,
        steer: Steer::Default,
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
        node_groups: GroupSet::default(),
        node_drain: false,
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
fn a_node_on_an_old_timeline_takes_no_reads_and_a_fenced_one_nothing() {
    // Node 2 claims to be primary on an old timeline; node 0 is the newest timeline's primary.
    let mut c = Case::new(Target::Read);
    c.view.nodes[2].in_recovery = Some(false);
    c.view.nodes[2].old_timeline = true;
    for _ in 0..10 {
        assert_eq!(
            c.decide(),
            Decision::Node(Route::Replica(1), Reason::Replica)
        );
    }
    // A replica on an old timeline (it may follow the fenced node): not even least-lagged.
    c.view.nodes[1].old_timeline = true;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::NoReplica)
    );
    c.view.nodes[1].old_timeline = false;
    c.view.nodes[1].lagging = true;
    c.view.nodes[2].lagging = true;
    c.policy.when_all_lagging = WhenAllLagging::LeastLagged;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Replica(1), Reason::LeastLagged)
    );
    // Before the monitor's first round, configured roles count, but not on an old timeline.
    let mut c = Case::new(Target::Read);
    c.view.observed = false;
    c.view.nodes[1].old_timeline = true;
    c.view.nodes[2].old_timeline = true;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::NoReplica)
    );
    // A connection held on a node that got fenced meanwhile takes nothing more.
    for target in [Target::Write, Target::Read] {
        let mut c = Case::new(target);
        c.view.nodes[0].old_timeline = true;
        c.view.primary = Primary::Known(2);
        c.held = Some(HeldFacts {
            kept_for: Some(Reason::Transaction),
            ..held(Route::Primary(0))
        });
        assert_eq!(
            c.decide(),
            Decision::Refuse(RouteError::Fenced("pg1".into()))
        );
    }
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

// --- Groups, drain and steering by rules and hints.

/// Node 2 in group 0 ("analytics"), with `exclusive` and `when_empty` as given.
fn with_group(exclusive: bool, when_empty: WhenGroupEmpty) -> Case {
    let mut c = Case::new(Target::Read);
    let g = GroupId(0);
    c.nodes[2].groups = GroupSet::default().with(g);
    let rules = RuleSet {
        rules: Vec::new(),
        groups: vec![super::super::rules::Group {
            name: "analytics".into(),
            exclusive,
            max_bytes: None,
            max_time: None,
            when_empty,
        }],
    };
    c.policy.rules = Arc::new(rules);
    if exclusive {
        c.policy.exclusive = GroupSet::default().with(g);
    }
    c
}

const RULE: By = By::Rule(RuleId(3));

#[test]
fn a_read_steered_to_a_group_goes_to_its_replica_and_names_the_rule() {
    let mut c = with_group(true, WhenGroupEmpty::Primary);
    c.unit.steer = Steer::Group(GroupId(0), RULE);
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Replica(2), Reason::Rule(RuleId(3)))
    );
}

#[test]
fn other_reads_never_use_an_exclusive_groups_replica() {
    let mut c = with_group(true, WhenGroupEmpty::Primary);
    for tick in 0..8 {
        c.nodes[1].outstanding = tick;
        assert_eq!(
            c.decide(),
            Decision::Node(Route::Replica(1), Reason::Replica),
            "with {tick} reads on node 1"
        );
    }
    // With the shared replica down, the read goes to the primary rather than the group.
    c.nodes[1].up = false;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::NoReplica)
    );
}

#[test]
fn a_non_exclusive_groups_replica_also_takes_other_reads() {
    let mut c = with_group(false, WhenGroupEmpty::Primary);
    c.nodes[1].up = false;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Replica(2), Reason::Replica)
    );
}

#[test]
fn an_empty_group_does_what_when_empty_says() {
    for (when, want) in [
        (
            WhenGroupEmpty::Primary,
            Decision::Node(Route::Primary(0), Reason::NoReplica),
        ),
        (
            WhenGroupEmpty::Replicas,
            Decision::Node(Route::Replica(1), Reason::Replica),
        ),
        (
            WhenGroupEmpty::Error,
            Decision::Refuse(RouteError::GroupEmpty("analytics".into())),
        ),
    ] {
        let mut c = with_group(true, when);
        c.unit.steer = Steer::Group(GroupId(0), RULE);
        c.nodes[2].up = false;
        assert_eq!(c.decide(), want, "when_empty = {when}");
    }
}

#[test]
fn a_groups_own_lag_limits_decide_for_reads_routed_to_it() {
    let mut c = with_group(true, WhenGroupEmpty::Primary);
    c.unit.steer = Steer::Group(GroupId(0), RULE);
    // Over the [lag] limits (the monitor's flag) but within the group's generous ones.
    c.view.nodes[2].lagging = true;
    c.view.nodes[2].lag_bytes = 500_000_000;
    let mut rules = RuleSet::default();
    rules.groups = c.policy.rules.groups.clone();
    rules.groups[0].max_bytes = Some(1_000_000_000);
    c.policy.rules = Arc::new(rules);
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Replica(2), Reason::Rule(RuleId(3)))
    );
    // Beyond them: the group is empty.
    c.view.nodes[2].lag_bytes = 2_000_000_000;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::Lagging)
    );
}

#[test]
fn a_drained_replica_takes_no_new_reads() {
    let mut c = Case::new(Target::Read);
    c.nodes[1].drain = true;
    for tick in 0..4 {
        c.nodes[2].outstanding = tick;
        assert_eq!(
            c.decide(),
            Decision::Node(Route::Replica(2), Reason::Replica)
        );
    }
    c.nodes[2].drain = true;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::NoReplica)
    );
    // Not even as the least lagged one.
    c.policy.when_all_lagging = WhenAllLagging::LeastLagged;
    c.nodes[2].drain = false;
    c.view.nodes[2].lagging = true;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Replica(2), Reason::LeastLagged)
    );
    c.nodes[2].drain = true;
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::NoReplica)
    );
}

#[test]
fn steering_never_sends_a_write_to_a_replica() {
    let mut c = with_group(true, WhenGroupEmpty::Primary);
    for steer in [
        Steer::Group(GroupId(0), RULE),
        Steer::Replica(By::Hint),
        Steer::Primary(By::Hint),
    ] {
        c.unit = unit(Target::Write);
        c.unit.steer = steer;
        assert_eq!(
            c.decide(),
            Decision::Node(Route::Primary(0), Reason::Write),
            "{steer:?}"
        );
    }
}

#[test]
fn a_hint_or_rule_for_the_primary_takes_reads_there() {
    let mut c = Case::new(Target::Read);
    c.unit.steer = Steer::Primary(By::Hint);
    assert_eq!(c.decide(), Decision::Node(Route::Primary(0), Reason::Hint));
    c.unit.steer = Steer::Primary(RULE);
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::Rule(RuleId(3)))
    );
}

#[test]
fn steering_to_replicas_keeps_read_your_writes() {
    let mut c = with_group(true, WhenGroupEmpty::Primary);
    c.unit.steer = Steer::Group(GroupId(0), RULE);
    c.session.read = needs_lsn(200);
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::ReadYourWrites)
    );
    c.unit.steer = Steer::Replica(By::Hint);
    assert_eq!(
        c.decide(),
        Decision::Node(Route::Primary(0), Reason::ReadYourWrites)
    );
}

#[test]
fn a_held_transaction_is_not_moved_by_steering() {
    let mut c = with_group(true, WhenGroupEmpty::Primary);
    c.unit.steer = Steer::Group(GroupId(0), RULE);
    c.held = Some(HeldFacts {
        kept_for: Some(Reason::Transaction),
        ..held(Route::Primary(0))
    });
    assert_eq!(c.decide(), Decision::Held(Reason::Transaction));
}

#[test]
fn a_read_joins_a_held_replica_only_if_it_may_be_steered_there() {
    let mut c = with_group(true, WhenGroupEmpty::Primary);
    // Held on node 1 (shared), a read steered to the group waits instead of joining it.
    c.held = Some(held(Route::Replica(1)));
    c.unit.steer = Steer::Group(GroupId(0), RULE);
    assert_eq!(c.decide(), Decision::WaitForHeld);
    c.unit.steer = Steer::Default;
    assert_eq!(c.decide(), Decision::Held(Reason::Pipelined));
    // Held on the exclusive node 2: only group reads join it.
    c.held = Some(HeldFacts {
        node_groups: GroupSet::default().with(GroupId(0)),
        ..held(Route::Replica(2))
    });
    assert_eq!(c.decide(), Decision::WaitForHeld);
    c.unit.steer = Steer::Group(GroupId(0), RULE);
    assert_eq!(c.decide(), Decision::Held(Reason::Pipelined));
    // Nor a drained one; nor a replica at all for a read steered to the primary.
    c.held = Some(HeldFacts {
        node_drain: true,
        node_groups: GroupSet::default().with(GroupId(0)),
        ..held(Route::Replica(2))
    });
    assert_eq!(c.decide(), Decision::WaitForHeld);
    c.held = Some(held(Route::Replica(1)));
    c.unit.steer = Steer::Primary(By::Hint);
    assert_eq!(c.decide(), Decision::WaitForHeld);
}
