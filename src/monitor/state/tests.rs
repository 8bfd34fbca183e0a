//! The derivation, sample by sample, on a simulated clock.

use super::*;

const MS: Duration = Duration::from_millis(1);
const INTERVAL: Duration = Duration::from_millis(100);

fn limits() -> LagLimits {
    LagLimits {
        max_bytes: 1000,
        max_time: Duration::from_secs(1),
        recover_ratio: 0.5,
    }
}

/// node0 configured primary, node1 and node2 replicas.
fn new_state() -> State {
    let names = ["node0", "node1", "node2"].map(String::from).to_vec();
    State::new(names, INTERVAL, limits(), Primary::Known(0))
}

/// A probe asked at `at` and answered 1 ms later.
fn sample(at: Instant, in_recovery: bool, lsn: u64) -> Result<Sample, ProbeError> {
    Ok(Sample {
        asked_at: at,
        answered_at: at + MS,
        in_recovery,
        lsn: Lsn(lsn),
        timeline: Some(1),
        checkpoint_timeline: Some(1),
    })
}

fn refused() -> Result<Sample, ProbeError> {
    Err(ProbeError {
        conclusive: true,
        message: "connection refused".into(),
    })
}

fn timed_out() -> Result<Sample, ProbeError> {
    Err(ProbeError::inconclusive("probe timed out".into()))
}

/// Records a primary sample on node0 and replica samples on node1/node2 at `at`, then derives
/// 1 ms after the last answer.
fn tick(s: &mut State, at: Instant, primary: u64, replicas: [u64; 2]) -> ClusterView {
    s.record(0, sample(at, false, primary));
    s.record(1, sample(at + MS, true, replicas[0]));
    s.record(2, sample(at + 2 * MS, true, replicas[1]));
    s.derive(at + 4 * MS)
}

fn takes_reads(nv: &NodeView) -> bool {
    nv.takes_reads()
}

#[test]
fn lag_bytes_is_the_primary_position_minus_the_replay_position() {
    let t0 = Instant::now();
    let mut s = new_state();
    let view = tick(&mut s, t0, 5000, [4400, 5000]);
    assert!(view.observed);
    assert_eq!(view.primary, Primary::Known(0));
    assert_eq!(view.primary_lsn, Some(Lsn(5000)));
    assert_eq!(view.nodes[1].lag_bytes, 600);
    assert_eq!(view.nodes[2].lag_bytes, 0);
    assert_eq!(view.nodes[0].lag_bytes, 0, "the primary has no lag");
    // A replica sampled just after the primary may be ahead of the primary's sample.
    let view = tick(&mut s, t0 + INTERVAL, 5000, [5100, 5000]);
    assert_eq!(view.nodes[1].lag_bytes, 0);
    // Over max_bytes: no reads.
    let view = tick(&mut s, t0 + 2 * INTERVAL, 9000, [5100, 9000]);
    assert_eq!(view.nodes[1].lag_bytes, 3900);
    assert!(view.nodes[1].lagging && !view.nodes[2].lagging);
}

#[test]
fn idle_caught_up_cluster_has_no_time_lag() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 1000, [1000, 1000]);
    for i in 1..600 {
        let view = tick(&mut s, t0 + i * INTERVAL, 1000, [1000, 1000]);
        for id in [1, 2] {
            assert_eq!(
                view.nodes[id].lag_time,
                Duration::ZERO,
                "tick {i}: {view:?}"
            );
            assert!(takes_reads(&view.nodes[id]), "tick {i}: {view:?}");
        }
    }
}

/// A simulated cluster: the primary commits a record of `record` bytes every `every`
/// (first at 17 ms), the replicas replay each `replay_delay` after it; the primary's probe runs
/// every [`INTERVAL`] at `primary_phase`, the replicas' at `replica_phase`. `short_by` bytes of
/// the primary's position are never covered by a replica's replay position (padding).
struct Sim {
    every: Duration,
    record: u64,
    replay_delay: Duration,
    primary_phase: Duration,
    replica_phase: Duration,
    short_by: u64,
}

impl Sim {
    fn light(every_ms: u64, short_by: u64) -> Sim {
        Sim {
            every: Duration::from_millis(every_ms),
            record: 112,
            replay_delay: 3 * MS,
            primary_phase: Duration::ZERO,
            replica_phase: Duration::ZERO,
            short_by,
        }
    }

    fn written_by(&self, since_start: Duration) -> u64 {
        let first = 17 * MS;
        if since_start < first {
            return 0;
        }
        1 + ((since_start - first).as_nanos() / self.every.as_nanos()) as u64
    }

    /// Runs for `secs` seconds; returns every view of replica node1 once every node has
    /// answered, with its time.
    fn run(&self, secs: u64) -> Vec<(Duration, NodeView)> {
        const BASE: u64 = 0x400_0000;
        let t0 = Instant::now();
        let mut s = new_state();
        let mut events = Vec::new();
        let ticks = secs * 1000 / INTERVAL.as_millis() as u64;
        for i in 0..ticks as u32 {
            events.push((INTERVAL * i + self.primary_phase, 0));
            events.push((INTERVAL * i + self.replica_phase + MS / 2, 1));
            events.push((INTERVAL * i + self.replica_phase + MS, 2));
        }
        events.sort();
        let mut views = Vec::new();
        for (at, node) in events {
            let lsn = if node == 0 {
                BASE + self.record * self.written_by(at)
            } else {
                let replayed = self.written_by(at.saturating_sub(self.replay_delay));
                (BASE + self.record * replayed).saturating_sub(self.short_by)
            };
            s.record(node, sample(t0 + at, node != 0, lsn));
            let view = s.derive(t0 + at + 2 * MS);
            if view.observed {
                views.push((at, view.nodes[1].clone()));
            }
        }
        views
    }
}

/// Issue 9 item 16: replicas that keep up with a lightly written primary show (almost) no
/// time lag and keep taking reads, whatever the phase of the probes against each other and
/// against the writes, and even when their replay position stays a few bytes short of the
/// primary's position.
#[test]
fn lightly_written_caught_up_cluster_has_no_time_lag() {
    for every_ms in [300, 1200] {
        for short_by in [0, 8] {
            for (p, r) in [(0, 0), (0, 50), (50, 0), (99, 1), (1, 99)] {
                let sim = Sim {
                    primary_phase: Duration::from_millis(p),
                    replica_phase: Duration::from_millis(r),
                    ..Sim::light(every_ms, short_by)
                };
                for (at, nv) in sim.run(6) {
                    let case = format!("writes every {every_ms} ms, {short_by} bytes short, phases {p}/{r} ms, at {at:?}: {nv:?}");
                    assert!(nv.lag_time <= sim.replay_delay, "{case}");
                    assert!(takes_reads(&nv), "{case}");
                }
            }
        }
    }
}

#[test]
fn apply_delay_and_paused_replay_are_time_lag() {
    // Each record replayed 2 s after it was written.
    let delayed = Sim {
        replay_delay: Duration::from_secs(2),
        ..Sim::light(300, 0)
    };
    let views = delayed.run(6);
    let late: Vec<_> = views
        .iter()
        .filter(|(at, _)| *at > Duration::from_secs(3))
        .collect();
    assert!(late.iter().all(|(_, nv)| nv.lagging), "{late:?}");
    let max = late.iter().map(|(_, nv)| nv.lag_time).max();
    assert!(
        max.is_some_and(|m| m >= Duration::from_millis(1700)),
        "{max:?}"
    );

    // One write, then nothing: a replica that never replays it lags more and more.
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 1000, [1000, 1000]);
    for i in 1..30 {
        let view = tick(&mut s, t0 + i * INTERVAL, 1200, [1000, 1200]);
        let expected = (i - 1) * INTERVAL;
        assert!(
            view.nodes[1].lag_time + 5 * MS >= expected && view.nodes[1].lag_time <= expected,
            "tick {i}: {:?}",
            view.nodes[1]
        );
        assert_eq!(
            view.nodes[1].lagging,
            expected > Duration::from_secs(1),
            "tick {i}"
        );
        assert_eq!(view.nodes[2].lag_time, Duration::ZERO);
    }
}

#[test]
fn a_lagging_replica_returns_only_under_recover_ratio_times_the_limits() {
    let t0 = Instant::now();
    let mut s = new_state();
    let at = |i: u32| t0 + i * INTERVAL;
    assert!(
        !tick(&mut s, at(0), 2000, [1000, 2000]).nodes[1].lagging,
        "1000 bytes: at the limit"
    );
    assert!(
        tick(&mut s, at(1), 2001, [1000, 2001]).nodes[1].lagging,
        "1001 bytes: over"
    );
    // 700 bytes behind: under the limit, over half of it.
    assert!(tick(&mut s, at(2), 2001, [1301, 2001]).nodes[1].lagging);
    assert!(
        !tick(&mut s, at(3), 2001, [1501, 2001]).nodes[1].lagging,
        "500 bytes: back"
    );

    // The same in time. The primary writes 50 bytes a tick; the replica replays `k` ticks
    // behind it, which is (k - 1) ticks after the primary was first seen past it.
    let mut s = new_state();
    let behind = |s: &mut State, i: u32, k: u32| {
        let p = 5000 + 50 * u64::from(i);
        tick(s, at(i), p, [p - 50 * u64::from(k.min(i)), p]).nodes[1].clone()
    };
    for i in 0..12 {
        behind(&mut s, i, 12);
    }
    let nv = behind(&mut s, 12, 12);
    assert!(nv.lag_time == 1100 * MS && nv.lagging, "{nv:?}");
    // 0.7 s: under the limit, over half of it.
    let nv = behind(&mut s, 13, 8);
    assert!(nv.lag_time == 700 * MS && nv.lagging, "{nv:?}");
    let nv = behind(&mut s, 14, 6);
    assert!(nv.lag_time == 500 * MS && !nv.lagging, "{nv:?}");
}

#[test]
fn a_promotion_is_observed_and_a_role_change_resets_the_replay_position() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 9000, [8000, 9000]);
    // node0 goes away, node1 is promoted.
    assert!(matches!(
        s.record(0, refused()),
        Some(Reachability::Down(_))
    ));
    assert_eq!(s.derive(t0 + 10 * MS).primary, Primary::Missing);
    s.record(1, sample(t0 + 20 * MS, false, 9100));
    let view = s.derive(t0 + 30 * MS);
    assert_eq!(view.primary, Primary::Known(1));
    assert_eq!(view.primary_lsn, Some(Lsn(9100)));
    assert_eq!(view.nodes[1].in_recovery, Some(false));
    assert_eq!(view.nodes[1].lag_bytes, 0);
    assert!(!view.nodes[1].lagging);
    // node0 comes back as a replica of node1 (rewound): its replay position is its own now,
    // not the higher one it had as primary.
    assert_eq!(
        s.record(0, sample(t0 + 40 * MS, true, 4000)),
        Some(Reachability::Up)
    );
    let view = s.derive(t0 + 50 * MS);
    assert_eq!(view.primary, Primary::Known(1));
    assert_eq!(view.nodes[0].replay_lsn, Some(Lsn(4000)));
    assert_eq!(view.nodes[0].lag_bytes, 5100);
}

#[test]
fn two_primaries_are_a_conflict_until_one_steps_down() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 9000, [9000, 9000]);
    s.record(2, sample(t0 + 10 * MS, false, 9500));
    assert_eq!(
        s.derive(t0 + 20 * MS).primary,
        Primary::Conflict(vec![0, 2])
    );
    s.record(2, refused());
    assert_eq!(s.derive(t0 + 30 * MS).primary, Primary::Known(0));
}

#[test]
fn configured_primary_stands_until_every_node_answered() {
    let t0 = Instant::now();
    let mut s = new_state();
    s.record(1, sample(t0, false, 100));
    let view = s.derive(t0 + MS);
    assert!(!view.observed);
    assert_eq!(view.primary, Primary::Known(0));
    s.record(0, sample(t0 + MS, true, 100));
    s.record(2, sample(t0 + MS, true, 100));
    let view = s.derive(t0 + 2 * MS);
    assert!(view.observed);
    assert_eq!(view.primary, Primary::Known(1));
}

#[test]
fn a_node_is_unreachable_after_three_inconclusive_failures_or_one_conclusive() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 1000, [1000, 1000]);
    assert_eq!(s.record(1, timed_out()), None);
    assert_eq!(s.record(1, timed_out()), None);
    assert!(
        s.derive(t0 + INTERVAL).nodes[1].reachable,
        "2 timeouts: still reachable"
    );
    assert!(matches!(s.record(1, timed_out()), Some(Reachability::Down(e)) if !e.conclusive));
    assert!(!s.derive(t0 + INTERVAL).nodes[1].reachable);
    assert_eq!(
        s.record(1, timed_out()),
        None,
        "the change is reported once"
    );
    assert_eq!(
        s.record(1, sample(t0 + INTERVAL, true, 1000)),
        Some(Reachability::Up)
    );
    assert_eq!(s.record(1, sample(t0 + 2 * INTERVAL, true, 1000)), None);
    // A refusal counts at once, and a success resets the count of inconclusive ones.
    assert_eq!(s.record(2, timed_out()), None);
    assert!(matches!(s.record(2, refused()), Some(Reachability::Down(e)) if e.conclusive));
    let view = s.derive(t0 + 2 * INTERVAL);
    assert!(!view.nodes[2].reachable && view.nodes[1].reachable);
    // A node that fails its very first probe is unreachable at once.
    let mut s = new_state();
    assert!(matches!(
        s.record(0, timed_out()),
        Some(Reachability::Down(_))
    ));
}

#[test]
fn late_primary_samples_count_as_replica_lag() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 1000, [1000, 1000]);
    // The primary's probes hang; the replicas answer every tick.
    let mut view = s.derive(t0);
    for i in 1..=15 {
        let at = t0 + i * INTERVAL;
        s.record(1, sample(at, true, 1000));
        s.record(2, sample(at, true, 1000));
        view = s.derive(at + MS);
        let silent = at + MS - (t0 + MS);
        let expected = silent.saturating_sub(2 * INTERVAL);
        assert_eq!(view.nodes[1].lag_time, expected, "tick {i}");
    }
    assert!(view.nodes[1].lagging && view.nodes[2].lagging, "{view:?}");
    // Once the primary is found unreachable, what it might be writing is moot: the replicas
    // take reads.
    s.record(0, refused());
    let view = s.derive(t0 + 16 * INTERVAL);
    assert_eq!(view.primary, Primary::Missing);
    assert!(
        takes_reads(&view.nodes[1]) && takes_reads(&view.nodes[2]),
        "{view:?}"
    );
}

#[test]
fn late_replica_samples_count_as_lag_while_the_primary_moves_on() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 1000, [1000, 1000]);
    // node1's probes hang from here on; the primary writes at tick 1.
    let mut view = s.derive(t0);
    for i in 1..=15 {
        let at = t0 + i * INTERVAL;
        s.record(0, sample(at, false, 2000));
        s.record(2, sample(at, true, 2000));
        view = s.derive(at + MS);
        // Seen at 2000 at tick 1 (answered 1 ms in); node1 last answered at t0.
        let expected = (at + MS - 2 * INTERVAL).saturating_duration_since(t0 + INTERVAL + MS);
        assert_eq!(view.nodes[1].lag_time, expected, "tick {i}");
        assert_eq!(view.nodes[2].lag_time, Duration::ZERO, "tick {i}");
    }
    assert!(view.nodes[1].lagging, "{view:?}");
    // The same silence on an idle primary is no lag: nothing was written since.
    let mut s = new_state();
    tick(&mut s, t0, 1000, [1000, 1000]);
    for i in 1..=15 {
        let at = t0 + i * INTERVAL;
        s.record(0, sample(at, false, 1000));
        s.record(2, sample(at, true, 1000));
        view = s.derive(at + MS);
        assert_eq!(view.nodes[1].lag_time, Duration::ZERO, "tick {i}");
    }
}

#[test]
fn promotion_is_due_once_the_primary_has_been_missing_long_enough() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 9000, [8000, 8500]);
    let after = Duration::from_secs(1);
    assert_eq!(s.promotion_due(t0, after), None, "the primary is there");
    s.record(0, refused());
    s.derive(t0 + INTERVAL);
    assert_eq!(
        s.promotion_due(t0 + 500 * MS, after),
        None,
        "not missing long enough"
    );
    assert_eq!(
        s.promotion_due(t0 + 1200 * MS, after),
        Some(2),
        "the most advanced replica"
    );
    assert_eq!(
        s.promotion_due(t0 + 1300 * MS, after),
        None,
        "once per outage"
    );
}

#[test]
fn a_node_added_by_a_reload_takes_reads_after_its_first_probe_and_keeps_the_primary() {
    let t0 = Instant::now();
    let mut s = new_state();
    let view = tick(&mut s, t0, 1000, [1000, 1000]);
    assert!(view.observed && view.primary == Primary::Known(0));
    let id = s.add("node3".into());
    assert_eq!(id, 3);
    let view = tick(&mut s, t0 + INTERVAL, 1000, [1000, 1000]);
    assert!(
        view.observed,
        "an added node does not unsettle the observed roles"
    );
    assert_eq!(view.primary, Primary::Known(0));
    assert_eq!(view.nodes.len(), 4);
    assert!(!view.nodes[3].reachable, "not probed yet: takes nothing");
    s.record(3, sample(t0 + 2 * INTERVAL, true, 1000));
    let view = tick(&mut s, t0 + 2 * INTERVAL, 1000, [1000, 1000]);
    assert!(takes_reads(&view.nodes[3]), "{view:?}");
}

#[test]
fn a_removed_node_is_never_primary_nor_replica_and_late_samples_are_ignored() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 1000, [1000, 1000]);
    s.remove(2);
    let view = tick(&mut s, t0 + INTERVAL, 1000, [1000, 1000]);
    assert!(!view.nodes[2].reachable && view.nodes[2].in_recovery.is_none());
    assert!(takes_reads(&view.nodes[1]));
    // The old primary removed and a replica promoted: the promoted one is the primary, even if
    // the removed node's prober still reports it as one.
    s.remove(0);
    s.record(0, sample(t0 + 2 * INTERVAL, false, 2000));
    s.record(1, sample(t0 + 2 * INTERVAL, false, 1500));
    let view = s.derive(t0 + 2 * INTERVAL + 5 * MS);
    assert_eq!(view.primary, Primary::Known(1), "{view:?}");
}

#[test]
fn before_the_first_round_a_reload_names_the_configured_primary() {
    let t0 = Instant::now();
    let mut s = new_state();
    s.configured_primary(1);
    assert_eq!(s.derive(t0).primary, Primary::Known(1));
    tick(&mut s, t0, 1000, [1000, 1000]);
    s.configured_primary(2);
    assert_eq!(
        s.derive(t0 + INTERVAL).primary,
        Primary::Known(0),
        "once observed, only probes decide"
    );
}

/// A probe of `node` on `timeline`, asked at `at`.
fn on_timeline(
    at: Instant,
    in_recovery: bool,
    lsn: u64,
    timeline: u32,
) -> Result<Sample, ProbeError> {
    sample(at, in_recovery, lsn).map(|s| Sample {
        timeline: Some(timeline),
        ..s
    })
}

/// node0 primary on timeline 1 stops, node1 is promoted to timeline 2 (node2 follows it), and
/// node0 comes back as a primary on timeline 1.
fn old_primary_back(s: &mut State, t0: Instant) -> ClusterView {
    tick(s, t0, 9000, [9000, 9000]);
    s.record(0, refused());
    s.derive(t0 + 10 * MS);
    s.record(1, on_timeline(t0 + 20 * MS, false, 9100, 2));
    s.record(2, on_timeline(t0 + 20 * MS, true, 9100, 2));
    assert_eq!(s.derive(t0 + 30 * MS).primary, Primary::Known(1));
    s.record(0, on_timeline(t0 + 40 * MS, false, 9050, 1));
    s.derive(t0 + 50 * MS)
}

#[test]
fn a_primary_on_an_older_timeline_is_fenced_and_the_newest_one_keeps_the_writes() {
    let t0 = Instant::now();
    let mut s = new_state();
    let view = old_primary_back(&mut s, t0);
    assert_eq!(view.primary, Primary::Known(1), "{view:?}");
    assert!(view.nodes[0].fenced() && !view.nodes[0].takes_reads());
    assert!(!view.nodes[1].fenced() && !view.nodes[2].old_timeline);
    assert!(takes_reads(&view.nodes[2]));
    assert_eq!(s.take_fenced(), vec![0], "reported once");
    // It stays fenced while it claims to be primary, also once the newer primary is gone: a
    // fenced node never takes over.
    for i in 1..=20 {
        let at = t0 + i * INTERVAL;
        s.record(0, on_timeline(at, false, 9050 + u64::from(i), 1));
        s.record(1, on_timeline(at, false, 9100 + u64::from(i), 2));
        s.record(2, on_timeline(at, true, 9100 + u64::from(i), 2));
        let view = s.derive(at + 5 * MS);
        assert_eq!(view.primary, Primary::Known(1), "tick {i}");
        assert!(
            view.nodes[0].fenced() && takes_reads(&view.nodes[2]),
            "tick {i}: {view:?}"
        );
    }
    assert!(s.take_fenced().is_empty());
    s.record(1, refused());
    let view = s.derive(t0 + 3 * Duration::from_secs(1));
    assert_eq!(view.primary, Primary::Missing);
    assert!(view.nodes[0].fenced());
    // A manager must not promote from the old timeline either; node2 is on the newest.
    assert_eq!(
        s.promotion_due(t0 + Duration::from_secs(60), Duration::from_secs(1)),
        Some(2)
    );
}

#[test]
fn a_fenced_node_rejoins_once_it_is_in_recovery_again() {
    let t0 = Instant::now();
    let mut s = new_state();
    assert!(old_primary_back(&mut s, t0).nodes[0].fenced());
    // Rewound and started as a replica of node1: it follows timeline 2.
    let at = t0 + INTERVAL;
    s.record(0, on_timeline(at, true, 9100, 2));
    s.record(1, on_timeline(at, false, 9100, 2));
    s.record(2, on_timeline(at, true, 9100, 2));
    let view = s.derive(at + 5 * MS);
    assert_eq!(view.primary, Primary::Known(1));
    assert!(!view.nodes[0].fenced() && !view.nodes[0].old_timeline);
    assert!(takes_reads(&view.nodes[0]), "{view:?}");
    assert_eq!(view.nodes[0].replay_lsn, Some(Lsn(9100)));
}

#[test]
fn a_replica_on_an_older_timeline_takes_no_reads_until_it_follows_the_newest() {
    let t0 = Instant::now();
    let mut s = new_state();
    tick(&mut s, t0, 9000, [9000, 9000]);
    s.record(0, refused());
    s.record(1, on_timeline(t0 + 20 * MS, false, 9100, 2));
    // node2 still streams timeline 1 (from wherever): it may hold WAL node1 never wrote.
    s.record(2, on_timeline(t0 + 20 * MS, true, 9200, 1));
    let view = s.derive(t0 + 30 * MS);
    assert_eq!(view.primary, Primary::Known(1));
    assert!(view.nodes[2].old_timeline && !view.nodes[2].fenced());
    assert!(!view.nodes[2].takes_reads(), "{view:?}");
    s.record(2, on_timeline(t0 + 40 * MS, true, 9300, 2));
    assert!(s.derive(t0 + 50 * MS).nodes[2].takes_reads());
}

#[test]
fn claimants_on_the_same_timeline_or_with_no_history_are_a_conflict() {
    let t0 = Instant::now();
    // A replica promoted while the primary runs, both on timeline 2 as far as pgroute knows
    // (it has seen neither one's promotion): no way to tell which is current.
    let mut s = new_state();
    s.record(0, on_timeline(t0, false, 9000, 2));
    s.record(1, on_timeline(t0, true, 9000, 2));
    s.record(2, on_timeline(t0, false, 9500, 2));
    let view = s.derive(t0 + 5 * MS);
    assert_eq!(view.primary, Primary::Conflict(vec![0, 2]));
    assert!(!view.nodes[0].fenced() && !view.nodes[2].fenced());
    assert!(takes_reads(&view.nodes[1]), "reads go on: {view:?}");
    // Timelines unknown (no history at all): a conflict too.
    let mut s = new_state();
    for (id, rec) in [(0, false), (1, true), (2, false)] {
        s.record(
            id,
            sample(t0, rec, 9000).map(|x| Sample {
                timeline: None,
                ..x
            }),
        );
    }
    assert_eq!(s.derive(t0 + 5 * MS).primary, Primary::Conflict(vec![0, 2]));
    // Just started, two claimants on different timelines: the newer one is primary.
    let mut s = new_state();
    s.record(0, on_timeline(t0, false, 9000, 1));
    s.record(1, on_timeline(t0, true, 9000, 3));
    s.record(2, on_timeline(t0, false, 9500, 3));
    let view = s.derive(t0 + 5 * MS);
    assert_eq!(view.primary, Primary::Known(2));
    assert!(view.nodes[0].fenced());
}

#[test]
fn replicas_keep_taking_reads_through_a_conflict_however_long() {
    let t0 = Instant::now();
    let mut s = new_state();
    // node1 replays 150 bytes (three ticks) behind the primary, within max_time.
    let mut view = s.derive(t0);
    let pos = |i: u32| 5000 + 50 * u64::from(i);
    for i in 0..=5 {
        view = tick(&mut s, t0 + i * INTERVAL, pos(i), [pos(i) - 150, pos(i)]);
    }
    assert!(takes_reads(&view.nodes[1]), "{view:?}");
    assert!(view.nodes[1].lag_time > Duration::ZERO, "{view:?}");
    // node2 is promoted too (same timeline); both claimants write on for 10 s, and node1 (which
    // follows neither, as far as pgroute can tell) stays where it was.
    let mut at = t0;
    for i in 6..106 {
        at = t0 + i * INTERVAL;
        s.record(0, sample(at, false, pos(i)));
        s.record(1, sample(at + MS, true, pos(5) - 150));
        s.record(2, sample(at + 2 * MS, false, pos(i) + 7));
        view = s.derive(at + 4 * MS);
        assert_eq!(view.primary, Primary::Conflict(vec![0, 2]), "tick {i}");
        let nv = &view.nodes[1];
        assert!(takes_reads(nv), "tick {i}: {view:?}");
        assert!(nv.lag_time <= 400 * MS, "tick {i}: {nv:?}");
    }
    // node2 steps down: measured against node0 again, node1 is far behind it in bytes.
    s.record(2, sample(at + 5 * MS, true, pos(105)));
    let view = s.derive(at + 10 * MS);
    assert_eq!(view.primary, Primary::Known(0));
    assert!(
        view.nodes[1].lagging && takes_reads(&view.nodes[2]),
        "{view:?}"
    );
}

#[test]
fn a_replica_timeline_known_only_from_its_last_checkpoint_is_not_judged_old() {
    let t0 = Instant::now();
    let mut s = new_state();
    let no_receiver = |at, lsn, checkpoint| {
        sample(at, true, lsn).map(|x| Sample {
            timeline: None,
            checkpoint_timeline: Some(checkpoint),
            ..x
        })
    };
    // node2 never shows its WAL receiver (the monitor's role may not see it): its last
    // restartpoint was on timeline 1, which says nothing about where it is now.
    s.record(0, sample(t0, false, 9000));
    s.record(1, sample(t0, true, 9000));
    s.record(2, no_receiver(t0, 9000, 1));
    s.derive(t0 + 5 * MS);
    s.record(0, refused());
    s.record(1, on_timeline(t0 + 20 * MS, false, 9100, 2));
    s.record(2, no_receiver(t0 + 20 * MS, 9100, 1));
    let view = s.derive(t0 + 30 * MS);
    assert_eq!(view.nodes[2].timeline, Some(1));
    assert!(takes_reads(&view.nodes[2]), "{view:?}");
    // Once seen streaming timeline 2, a later checkpoint-only reading does not take it back.
    s.record(2, on_timeline(t0 + 40 * MS, true, 9100, 2));
    s.record(2, no_receiver(t0 + 60 * MS, 9100, 1));
    let view = s.derive(t0 + 70 * MS);
    assert_eq!(view.nodes[2].timeline, Some(2));
    assert!(takes_reads(&view.nodes[2]), "{view:?}");
    // Seen streaming timeline 1 (from the fenced node, say), then not streaming: still old.
    s.record(2, on_timeline(t0 + 80 * MS, true, 9200, 1));
    s.record(2, no_receiver(t0 + 90 * MS, 9200, 1));
    let view = s.derive(t0 + 100 * MS);
    assert!(
        view.nodes[2].old_timeline && !takes_reads(&view.nodes[2]),
        "{view:?}"
    );
}

#[test]
fn a_reload_keeps_the_timeline_history_and_judges_added_nodes_by_it() {
    let t0 = Instant::now();
    let mut s = new_state();
    assert!(old_primary_back(&mut s, t0).nodes[0].fenced());
    // The promoted node is removed from the config: the cluster still went through timeline 2.
    s.remove(1);
    s.record(0, on_timeline(t0 + INTERVAL, false, 9060, 1));
    let view = s.derive(t0 + INTERVAL + 5 * MS);
    assert_eq!(view.primary, Primary::Missing, "{view:?}");
    assert!(view.nodes[0].fenced());
    // An added node on timeline 2 takes the writes once probed; one on timeline 1 is fenced.
    let added = s.add("node3".into());
    let old = s.add("node4".into());
    s.record(added, on_timeline(t0 + 2 * INTERVAL, false, 9300, 2));
    s.record(old, on_timeline(t0 + 2 * INTERVAL, false, 9400, 1));
    let view = s.derive(t0 + 2 * INTERVAL + 5 * MS);
    assert_eq!(view.primary, Primary::Known(added), "{view:?}");
    assert!(view.nodes[old].fenced() && !view.nodes[added].fenced());
}
