//! The `[admin]` endpoint on the shared cluster: `/metrics` parsed as Prometheus text, its
//! routing counters moving with a read, a write, a read-your-writes read and a rule's read;
//! `/health` and `/ready`. Each test has its own pgroute, so the counters are its own.

use std::collections::BTreeMap;

use super::*;
use common::scrape::{self, Metrics};

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
                     [lag]\ncheck_interval = \"500ms\"\nmax_bytes = \"1GB\"\nmax_time = \"1h\"\n\n\
                     [[rules]]\nname = \"metrics-reports\"\n\
                     application_name = \"metrics-report*\"\nroute = \"replica\"\n";

/// The config name of the node listening on `port` (`node0` is the primary).
fn node_name(port: i32) -> String {
    let node = (0..3)
        .find(|&n| i32::from(cluster().port(n)) == port)
        .unwrap_or_else(|| panic!("no node listens on {port}"));
    format!("node{node}")
}

/// Runs `sql` (a simple Query whose first column is `inet_server_port()`, or none) and asks
/// where it went: (port if returned, `SHOW pgroute.last_route`), tallied by (node, reason).
async fn run(
    client: &Client,
    sql: &str,
    tally: &mut BTreeMap<(String, String), f64>,
) -> (i32, String) {
    let rows = simple_rows(client, sql).await;
    let port = rows
        .first()
        .and_then(|r| r[0].as_deref())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let route = simple_rows(client, "SHOW pgroute.last_route").await[0][0]
        .clone()
        .unwrap_or_default();
    // "node1 (replica): replica", "node0 (primary): write", "node2 (replica): rule (rule x)"
    let (node, rest) = route
        .split_once(" (")
        .unwrap_or_else(|| panic!("route {route:?}"));
    let (_, reason) = rest
        .split_once("): ")
        .unwrap_or_else(|| panic!("route {route:?}"));
    let reason = reason.split(" (").next().unwrap_or_default();
    *tally
        .entry((node.to_owned(), reason.to_owned()))
        .or_default() += 1.0;
    (port, route)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_are_counted_by_the_node_they_ran_on_and_the_reason() {
    let proxy = start_proxy(cluster(), ADMIN);
    let before = scrape::scrape(&proxy).await;
    let mut tally = BTreeMap::new();

    // A fresh session's read: a replica, reason "replica".
    let reader = proxy.connect().await;
    let (read_port, route) = run(&reader, "SELECT inet_server_port()", &mut tally).await;
    assert!(route.ends_with(": replica"), "{route}");
    assert_ne!(
        node_name(read_port),
        "node0",
        "a read on a replica: {route}"
    );

    // Writes: the primary, reason "write".
    let writer = proxy.connect().await;
    let create = "CREATE TABLE IF NOT EXISTS metrics_units (id int)";
    let (_, route) = run(&writer, create, &mut tally).await;
    assert_eq!(route, "node0 (primary): write");
    // A read a moment after the session's write (once pgroute has the write's LSN, so that
    // the read does not just follow it on the same connection): the primary, until a replica
    // has replayed it.
    let mut routes = Vec::new();
    for _ in 0..20 {
        run(&writer, "INSERT INTO metrics_units VALUES (1)", &mut tally).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (port, route) = run(&writer, "SELECT inet_server_port()", &mut tally).await;
        if route.ends_with(": read-your-writes") {
            assert_eq!(node_name(port), "node0", "{route}");
            break;
        }
        routes.push(route);
    }
    let key = |node: &str, reason: &str| (node.to_owned(), reason.to_owned());
    assert_eq!(
        tally.get(&key("node0", "read-your-writes")),
        Some(&1.0),
        "one read waited for the session's write: {routes:?}"
    );

    // A read a rule steers: the rule's name is a label of its own.
    let reports = common::connect(&format!(
        "{} application_name=metrics-report-1",
        proxy.conn_str()
    ))
    .await;
    let (rule_port, route) = run(&reports, "SELECT inet_server_port()", &mut tally).await;
    assert!(route.contains("(rule metrics-reports)"), "{route}");
    let rule_node = node_name(rule_port);

    // The metrics say what SHOW pgroute.last_route said, unit for unit.
    let after = scrape::scrape(&proxy).await;
    for ((node, reason), n) in &tally {
        let moved = if reason == "rule" {
            let labels = [
                ("node", node.as_str()),
                ("reason", "rule"),
                ("rule", "metrics-reports"),
            ];
            after.value("pgroute_units_routed_total", &labels)
        } else {
            after.routed(node, reason) - before.routed(node, reason)
        };
        assert_eq!(moved, *n, "units routed to {node} for {reason}: {tally:?}");
    }
    assert_eq!(tally.get(&key(&rule_node, "rule")), Some(&1.0));
    let total = |m: &Metrics| -> f64 {
        m.0.samples
            .iter()
            .filter(|s| s.metric == "pgroute_units_routed_total")
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let counted: f64 = tally.values().sum();
    assert_eq!(
        total(&after) - total(&before),
        counted,
        "no unit counted twice or missed"
    );
    assert!(
        after
            .0
            .samples
            .iter()
            .all(|s| s.metric != "pgroute_units_routed_total"
                || s.labels.get("reason") == Some("rule")
                || s.labels.get("rule").is_none()),
        "only rule decisions carry a rule label"
    );
    // Every unit is timed; the first ones opened their server connections through a pool.
    let units = |m: &Metrics| m.value("pgroute_unit_duration_seconds", &[]);
    assert!(
        units(&after) - units(&before) >= 5.0,
        "unit durations observed"
    );
    let waits = |m: &Metrics| m.value("pgroute_pool_checkout_wait_seconds", &[]);
    assert!(waits(&after) - waits(&before) >= 3.0, "checkouts observed");
    let parsed = |m: &Metrics| m.value("pgroute_classify_cache_misses_total", &[]);
    assert!(
        parsed(&after) > parsed(&before),
        "new statement texts were classified"
    );
    let cached = |m: &Metrics| m.value("pgroute_classify_cache_hits_total", &[]);
    assert!(
        cached(&after) > cached(&before),
        "repeated texts came from the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_nodes_and_errors_are_shown() {
    let proxy = start_proxy(cluster(), ADMIN);
    let a = proxy.connect().await;
    let _b = proxy.connect().await;
    simple_rows(&a, "SELECT 1").await;
    let e = a.simple_query("SELEC 1").await.expect_err("a syntax error");
    assert_eq!(e.code(), Some(&SqlState::SYNTAX_ERROR));
    let e = a
        .simple_query("SHOW pgroute.no_such_setting")
        .await
        .expect_err("pgroute's own error");
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_OBJECT), "{e}");

    let m = scrape::scrape_until(
        &proxy,
        "every node probed up",
        Duration::from_secs(10),
        |m| (0..3).all(|n| m.value("pgroute_node_up", &[("node", &format!("node{n}"))]) == 1.0),
    )
    .await;
    assert_eq!(
        m.value("pgroute_client_errors_total", &[("class", "42")]),
        2.0,
        "the server's 42601 and pgroute's 42704"
    );
    let role =
        |node: &str, role: &str| m.value("pgroute_node_role", &[("node", node), ("role", role)]);
    assert_eq!(role("node0", "primary"), 1.0);
    assert_eq!(role("node1", "replica"), 1.0);
    assert_eq!(role("node2", "replica"), 1.0);
    for node in ["node1", "node2"] {
        assert!(
            m.get("pgroute_node_lag_bytes", &[("node", node)]).is_some(),
            "{node}"
        );
        assert!(
            m.get("pgroute_node_lag_seconds", &[("node", node)])
                .is_some(),
            "{node}"
        );
        assert_eq!(
            m.value("pgroute_node_lagging", &[("node", node)]),
            0.0,
            "{node}"
        );
    }
    let clients: f64 = ["active", "waiting", "idle"]
        .iter()
        .map(|s| m.value("pgroute_client_connections", &[("state", s)]))
        .sum();
    assert_eq!(clients, 2.0, "two clients connected");
    // The connection of `a`'s read went back to the pool of the replica it ran on.
    let idle: f64 = ["node1", "node2"]
        .iter()
        .map(|n| {
            m.value(
                "pgroute_server_connections",
                &[("node", n), ("state", "idle")],
            )
        })
        .sum();
    assert!(idle >= 1.0, "pooled replica connections: {idle}");

    // Health: the process runs; ready: a primary is known and the listener accepts.
    let (status, _, body) = scrape::get(&proxy, "/health").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = scrape::get(&proxy, "/ready").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, _, _) = scrape::get(&proxy, "/nothing-here").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_is_off_unless_configured() {
    let proxy = start_proxy(cluster(), "");
    assert_eq!(proxy.admin, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_by_result() {
    let proxy = start_proxy(cluster(), ADMIN);
    let toml = pgroute::demo::config_toml(cluster(), "127.0.0.1:0", USER, PASSWORD, ADMIN);
    proxy.reload(&toml).expect("the same config reloads");
    // What validation would refuse (a file read by SIGHUP is validated first, and counted
    // as failed there): the proxy refuses it too.
    let mut bad = pgroute::config::from_toml_str(&toml).expect("valid");
    bad.rules[0].route = "group:nowhere".to_owned();
    proxy
        .proxy
        .reload(bad)
        .expect_err("a rule naming no group is refused");
    let m = scrape::scrape(&proxy).await;
    let reloads = |r: &str| m.value("pgroute_config_reloads_total", &[("result", r)]);
    assert_eq!((reloads("ok"), reloads("failed")), (1.0, 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_waits_for_a_replica_to_replay_its_write_is_counted_with_its_outcome() {
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
                  [consistency]\nmax_wait = \"5s\"\n\n\
                  [lag]\ncheck_interval = \"100ms\"\nmax_bytes = \"1GB\"\nmax_time = \"1h\"\n";
    let proxy = start_proxy(cluster(), config);
    let client = proxy.connect().await;
    let mut tally = BTreeMap::new();
    run(
        &client,
        "CREATE TABLE IF NOT EXISTS metrics_waits (id int)",
        &mut tally,
    )
    .await;
    let outcome =
        |m: &Metrics, o: &str| m.value("pgroute_read_your_writes_waits_total", &[("outcome", o)]);
    for _ in 0..20 {
        run(&client, "INSERT INTO metrics_waits VALUES (1)", &mut tally).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (port, route) = run(&client, "SELECT inet_server_port()", &mut tally).await;
        let m = scrape::scrape(&proxy).await;
        let waited = outcome(&m, "replica") + outcome(&m, "primary") + outcome(&m, "refused");
        if waited == 0.0 {
            continue; // a probe saw the write replayed before the read: no wait
        }
        assert_eq!(waited, 1.0);
        assert_eq!(
            outcome(&m, "replica"),
            1.0,
            "a replica caught up well within max_wait: {route}"
        );
        assert_ne!(node_name(port), "node0", "and took the read: {route}");
        return;
    }
    panic!("no read waited for its write: {tally:?}");
}
