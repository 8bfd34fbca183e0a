//! The counters and histograms sessions update while they work, made cheap for the hot path:
//! every update is an atomic add on a handle resolved in advance. Labels are resolved once per
//! node × reason (and node × rule), not per statement; a node a reload adds gets its handles
//! the first time a unit is routed to it.
//!
//! What is read rather than counted (connections, lag, roles, cache sizes) is taken at scrape
//! time by [`super::scrape`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::router::decision::Reason;
use crate::router::rules::{RuleId, RuleSet};

/// A label set: `(name, value)` pairs (only the labels a series has).
pub type Labels = Vec<(&'static str, Arc<str>)>;

/// The `reason` label values, by [`reason_slot`]: the router's own [`Reason`] names.
const REASON_SLOTS: usize = 15;

/// Where a reason's counter sits in a node's handles. Exhaustive: a new [`Reason`] does not
/// compile until it has a slot.
fn reason_slot(reason: Reason) -> usize {
    match reason {
        Reason::Replica => 0,
        Reason::Write => 1,
        Reason::Transaction => 2,
        Reason::ReadOnlyTransaction => 3,
        Reason::Pinned => 4,
        Reason::SessionMode => 5,
        Reason::OpenSequence => 6,
        Reason::Pipelined => 7,
        Reason::ReadYourWrites => 8,
        Reason::Staleness => 9,
        Reason::Lagging => 10,
        Reason::LeastLagged => 11,
        Reason::NoReplica => 12,
        Reason::Rule(_) => 13,
        Reason::Hint => 14,
    }
}

/// One reason per slot, for its label value.
const SLOT_REASONS: [Reason; REASON_SLOTS] = [
    Reason::Replica,
    Reason::Write,
    Reason::Transaction,
    Reason::ReadOnlyTransaction,
    Reason::Pinned,
    Reason::SessionMode,
    Reason::OpenSequence,
    Reason::Pipelined,
    Reason::ReadYourWrites,
    Reason::Staleness,
    Reason::Lagging,
    Reason::LeastLagged,
    Reason::NoReplica,
    Reason::Rule(RuleId(0)),
    Reason::Hint,
];

/// Upper bounds (seconds) of the pool checkout wait histogram.
const CHECKOUT_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0,
];
/// Upper bounds (seconds) of the unit duration histogram.
const UNIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a read that waited for a replica to replay the session's writes went on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// A replica caught up in time and took the read.
    Replica,
    /// None did: the read went to the primary.
    Primary,
    /// The read was refused (no node could take it).
    Refused,
}

/// Every metric sessions update, shared through [`crate::proxy::Proxy`].
#[derive(Debug)]
pub struct Metrics {
    routed: Family<Labels, Counter>,
    route_handles: ArcSwap<RouteHandles>,
    /// Serialises rebuilds of `route_handles` (rare: a new node or a reloaded rule set).
    rebuild: Mutex<()>,
    errors: Family<Labels, Counter>,
    /// `errors` by SQLSTATE class, resolved on the first error of each class: two characters
    /// of `0-9A-Z`, so at most 36 × 36 series.
    error_classes: Box<[OnceLock<Counter>]>,
    ryw_waits: Family<Labels, Counter>,
    ryw_outcomes: [Counter; 3],
    reloads: Family<Labels, Counter>,
    reload_results: [Counter; 2],
    read_retries: Counter,
    /// `pgroute_pool_checkout_wait_seconds`: a unit's wait for a server connection.
    pub checkout_wait: Histogram,
    /// `pgroute_unit_duration_seconds`: from routing a unit to its ReadyForQuery.
    pub unit_duration: Histogram,
    /// Client connections open (authenticating or logged in).
    clients: AtomicU64,
}

/// The routed-unit counters resolved for the nodes and the rule set known when they were built.
#[derive(Debug, Default)]
struct RouteHandles {
    rules: Option<Arc<RuleSet>>,
    /// By node id: a counter per reason slot, and per rule id of `rules`.
    nodes: Vec<NodeHandles>,
}

#[derive(Debug)]
struct NodeHandles {
    reasons: [Counter; REASON_SLOTS],
    rules: Vec<Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let ryw_waits = Family::<Labels, Counter>::default();
        let outcome = |o: &str| ryw_waits.get_or_create_owned(&vec![("outcome", Arc::from(o))]);
        let ryw_outcomes = [outcome("replica"), outcome("primary"), outcome("refused")];
        let reloads = Family::<Labels, Counter>::default();
        let result = |r: &str| reloads.get_or_create_owned(&vec![("result", Arc::from(r))]);
        let reload_results = [result("ok"), result("failed")];
        Metrics {
            routed: Family::default(),
            route_handles: ArcSwap::from_pointee(RouteHandles::default()),
            rebuild: Mutex::new(()),
            errors: Family::default(),
            error_classes: (0..36 * 36).map(|_| OnceLock::new()).collect(),
            ryw_waits,
            ryw_outcomes,
            reloads,
            reload_results,
            read_retries: Counter::default(),
            checkout_wait: Histogram::new(CHECKOUT_BUCKETS),
            unit_duration: Histogram::new(UNIT_BUCKETS),
            clients: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a unit routed to node `node` for `reason`. `names` gives the node names by id and
    /// `rules` the rule set in force; both are asked only when the handles must be rebuilt
    /// (and `rules` also for a rule decision).
    pub fn routed(
        &self,
        node: usize,
        reason: Reason,
        names: impl FnOnce() -> Vec<String>,
        rules: impl FnOnce() -> Arc<RuleSet>,
    ) {
        let handles = self.route_handles.load();
        let Reason::Rule(RuleId(rule)) = reason else {
            if let Some(n) = handles.nodes.get(node) {
                n.reasons[reason_slot(reason)].inc();
                return;
            }
            drop(handles);
            return self.rebuild_and_count(node, reason, names(), rules());
        };
        let rules = rules();
        let current = handles
            .rules
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &rules));
        match handles.nodes.get(node) {
            Some(n) if current => {
                // A decision of a rule set replaced since: counted without the rule's name.
                let by_rule = n.rules.get(usize::from(rule));
                by_rule.unwrap_or(&n.reasons[reason_slot(reason)]).inc();
            }
            _ => {
                drop(handles);
                self.rebuild_and_count(node, reason, names(), rules);
            }
        }
    }

    /// The slow path of [`Metrics::routed`]: resolves the handles for every known node and the
    /// given rules, then counts.
    #[cold]
    fn rebuild_and_count(
        &self,
        node: usize,
        reason: Reason,
        names: Vec<String>,
        rules: Arc<RuleSet>,
    ) {
        let _serial = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.route_handles.load_full();
        let same_rules = old.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, &rules));
        if !(same_rules && old.nodes.len() > node) {
            let nodes = names
                .iter()
                .map(|name| self.node_handles(name, &rules))
                .collect();
            self.route_handles.store(Arc::new(RouteHandles {
                rules: Some(rules.clone()),
                nodes,
            }));
        }
        let handles = self.route_handles.load();
        let Some(n) = handles.nodes.get(node) else {
            return;
        };
        let by_rule = match reason {
            Reason::Rule(RuleId(id)) => n.rules.get(usize::from(id)),
            _ => None,
        };
        by_rule.unwrap_or(&n.reasons[reason_slot(reason)]).inc();
    }

    fn node_handles(&self, name: &str, rules: &RuleSet) -> NodeHandles {
        let node: Arc<str> = Arc::from(name);
        let series = |reason: Reason, rule: Option<&Arc<str>>| {
            let mut labels: Labels = vec![
                ("node", node.clone()),
                ("reason", Arc::from(reason.as_str())),
            ];
            if let Some(rule) = rule {
                labels.push(("rule", rule.clone()));
            }
            self.routed.get_or_create_owned(&labels)
        };
        NodeHandles {
            reasons: SLOT_REASONS.map(|r| series(r, None)),
            rules: rules
                .rules
                .iter()
                .map(|r| series(Reason::Rule(RuleId(0)), Some(&r.name)))
                .collect(),
        }
    }

    /// Counts an ErrorResponse sent to a client, by the class (first two characters) of its
    /// SQLSTATE; a code that is not five characters of `0-9A-Z` counts as class `XX`.
    pub fn client_error(&self, sqlstate: &[u8]) {
        let class = match sqlstate {
            [a, b, _, _, _] if digit36(*a).is_some() && digit36(*b).is_some() => [*a, *b],
            _ => *b"XX",
        };
        let (Some(a), Some(b)) = (digit36(class[0]), digit36(class[1])) else {
            return;
        };
        self.error_classes[a * 36 + b]
            .get_or_init(|| {
                let text = String::from_utf8_lossy(&class).into_owned();
                self.errors
                    .get_or_create_owned(&vec![("class", Arc::from(text))])
            })
            .inc();
    }

    /// Counts pgroute's own error `e` as sent to a client (the server's refusal of a login
    /// passes through, so its own code counts).
    pub fn error_sent(&self, e: &crate::error::Error) {
        use crate::backend::BackendError;
        match e {
            crate::error::Error::Login(BackendError::Refused(frame)) => self.client_error(
                crate::protocol::messages::error_code(frame)
                    .unwrap_or("")
                    .as_bytes(),
            ),
            e => self.client_error(e.sqlstate().code().as_bytes()),
        }
    }

    /// Counts a read that waited for a replica to replay the session's writes, and how it ended.
    pub fn ryw_wait(&self, outcome: WaitOutcome) {
        let i = match outcome {
            WaitOutcome::Replica => 0,
            WaitOutcome::Primary => 1,
            WaitOutcome::Refused => 2,
        };
        self.ryw_outcomes[i].inc();
    }

    /// Counts a configuration reload, applied or refused.
    pub fn reload(&self, ok: bool) {
        self.reload_results[usize::from(!ok)].inc();
    }

    /// Counts a read sent again on another node after its server failed.
    pub fn read_retry(&self) {
        self.read_retries.inc();
    }

    /// A client connection opened; it counts until the guard is dropped.
    pub fn client_connected(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Ordering::Relaxed);
        ClientGuard(self.clone())
    }

    /// Client connections open now.
    pub fn clients(&self) -> u64 {
        self.clients.load(Ordering::Relaxed)
    }

    /// Adds the counted metrics to `registry` (whose prefix is `pgroute`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "units_routed",
            "Units of work (a Query, or an extended batch up to Sync) routed, by node and reason",
            self.routed.clone(),
        );
        registry.register(
            "client_errors",
            "ErrorResponses sent to clients (pgroute's own and the servers'), by SQLSTATE class",
            self.errors.clone(),
        );
        registry.register(
            "read_your_writes_waits",
            "Reads that waited for a replica to replay the session's writes, by outcome",
            self.ryw_waits.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            self.reloads.clone(),
        );
        registry.register(
            "read_retries",
            "Reads sent again on another node after their server failed before answering",
            self.read_retries.clone(),
        );
        registry.register(
            "pool_checkout_wait_seconds",
            "Time a unit waited for a server connection (including opening one)",
            self.checkout_wait.clone(),
        );
        registry.register(
            "unit_duration_seconds",
            "Time from routing a unit to its ReadyForQuery",
            self.unit_duration.clone(),
        );
    }
}

fn digit36(c: u8) -> Option<usize> {
    match c {
        b'0'..=b'9' => Some(usize::from(c - b'0')),
        b'A'..=b'Z' => Some(usize::from(c - b'A') + 10),
        _ => None,
    }
}

/// Counts one open client connection while it lives.
#[derive(Debug)]
pub struct ClientGuard(Arc<Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A histogram with fixed buckets whose `observe` is three relaxed atomic adds (the crate's
/// own histogram takes a mutex per observation). Encoded by the crate like its own.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); above the last bound only in `count`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram(Arc::new(HistogramInner {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Records one observation: three relaxed atomic adds.
    pub fn observe(&self, d: Duration) {
        let h = &self.0;
        let secs = d.as_secs_f64();
        if let Some(i) = h.bounds.iter().position(|&b| secs <= b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        h.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .zip(h.buckets.iter())
            .map(|(&b, n)| (b, n.load(Ordering::Relaxed)))
            .collect();
        // An observation may be in its bucket and not yet in `count`: +Inf is never below.
        let in_buckets: u64 = buckets.iter().map(|(_, n)| n).sum();
        let count = h.count.load(Ordering::Relaxed).max(in_buckets);
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests;
