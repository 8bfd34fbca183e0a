//! Routing rules, replica groups, `pgroute.route` hints, reload and drain, end to end: node 2 is
//! in the `analytics` group; where each statement ran is asked of the server.

use super::*;

const REPORTS: &str = r#"
[groups.analytics]
exclusive = true
when_empty = "primary"

[[rules]]
name = "metabase"
application_name = "metabase*"
route = "group:analytics"

[[rules]]
name = "events"
tables = ["events_*"]
route = "group:analytics"

[[rules]]
name = "no-truncate"
query = "(?i)^\\s*truncate\\b"
route = "block"
message = "TRUNCATE is not allowed through pgroute"

[[rules]]
name = "admin"
user = "app"
application_name = "admin"
route = "primary"
"#;

/// The shared cluster's config with `extra` appended and `node2` keys added to node 2.
fn config(extra: &str, node2: &str) -> String {
    config_nodes(extra, "", node2)
}

/// The same, with keys for node 1 too.
fn config_nodes(extra: &str, node1: &str, node2: &str) -> String {
    pgroute::demo::config_toml(cluster(), "127.0.0.1:0", USER, PASSWORD, extra)
        .replace("name = \"node1\"\n", &format!("name = \"node1\"\n{node1}"))
        .replace("name = \"node2\"\n", &format!("name = \"node2\"\n{node2}"))
}

fn analytics_config(extra: &str) -> String {
    config(
        &format!("{REPLICA_READS}{extra}"),
        "groups = [\"analytics\"]\n",
    )
}

async fn connect_as_app(proxy: &TestProxy, application_name: &str) -> Client {
    common::connect(&format!(
        "{} application_name={application_name}",
        proxy.conn_str()
    ))
    .await
}

fn node_port(node: usize) -> i32 {
    i32::from(cluster().port(node))
}

/// Where `sql` (a simple Query whose first column is `inet_server_port()`) ran.
async fn port_of(client: &Client, sql: &str) -> i32 {
    simple_rows(client, sql).await[0][0]
        .as_deref()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: no port"))
}

async fn last_route(client: &Client) -> String {
    simple_rows(client, "SHOW pgroute.last_route").await[0][0]
        .clone()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_rule_keeps_its_reads_on_the_exclusive_group() {
    let proxy = start_proxy_toml(&analytics_config(REPORTS));
    let metabase = connect_as_app(&proxy, "metabase-x").await;
    let oltp = connect_as_app(&proxy, "shop").await;
    for _ in 0..12 {
        let port = port_of(&metabase, "SELECT inet_server_port()").await;
        assert_eq!(
            port,
            node_port(2),
            "metabase's reads go to the analytics replica: {}",
            last_route(&metabase).await
        );
        let (port, in_recovery) = server_of(&metabase).await;
        assert_eq!(
            (port, in_recovery),
            (node_port(2), true),
            "extended protocol too"
        );
        assert_eq!(
            port_of(&oltp, "SELECT inet_server_port()").await,
            node_port(1),
            "other reads never use the exclusive replica"
        );
        let (port, _) = server_of(&oltp).await;
        assert_eq!(port, node_port(1));
    }
    assert!(
        last_route(&metabase).await.contains("(rule metabase)"),
        "{}",
        last_route(&metabase).await
    );
    // Writes from metabase still go to the primary.
    let row = metabase
        .query_one(
            "SELECT inet_server_port() FROM (SELECT txid_current()) t",
            &[],
        )
        .await
        .expect("write-ish read");
    assert_eq!(row.get::<_, i32>(0), primary_port());
    // A session whose application_name changes is routed by its new name.
    simple_rows(&oltp, "SET application_name = 'metabase-2'").await;
    assert_eq!(
        port_of(&oltp, "SELECT inet_server_port()").await,
        node_port(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tables_rule_sends_a_join_touching_events_to_the_group() {
    let proxy = start_proxy_toml(&analytics_config(REPORTS));
    let client = proxy.connect().await;
    simple_rows(
        &client,
        "CREATE TABLE IF NOT EXISTS rules_orders (id int); \
         CREATE TABLE IF NOT EXISTS events_2026 (id int);",
    )
    .await;
    caught_up();
    let join = "SELECT inet_server_port() FROM (SELECT 1) one \
                LEFT JOIN rules_orders o ON true LEFT JOIN events_2026 e ON e.id = o.id LIMIT 1";
    for _ in 0..6 {
        assert_eq!(port_of(&client, join).await, node_port(2), "{join}");
        let plain = "SELECT inet_server_port() FROM (SELECT 1) one LEFT JOIN rules_orders o ON true LIMIT 1";
        assert_eq!(port_of(&client, plain).await, node_port(1), "{plain}");
    }
    assert!(last_route(&client)
        .await
        .contains("node1 (replica): replica"));
    let stmt = client.prepare(join).await.expect("prepare");
    let row = client.query_one(&stmt, &[]).await.expect("execute");
    assert_eq!(row.get::<_, i32>(0), node_port(2), "prepared");
    assert!(last_route(&client).await.contains("(rule events)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_rule_answers_42501_with_its_message() {
    on_primary(
        "CREATE TABLE IF NOT EXISTS rules_blocked (id int); INSERT INTO rules_blocked VALUES (1);",
    );
    let proxy = start_proxy_toml(&analytics_config(REPORTS));
    let client = proxy.connect().await;
    for result in [
        client
            .simple_query("TRUNCATE rules_blocked")
            .await
            .map(|_| ()),
        client
            .execute("  truncate rules_blocked", &[])
            .await
            .map(|_| ()),
    ] {
        let e = result.expect_err("blocked");
        let db = db_error(&e);
        assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
        assert_eq!(db.message(), "TRUNCATE is not allowed through pgroute");
    }
    assert_eq!(on_primary("SELECT count(*) FROM rules_blocked"), "1");
    // The session goes on, and a prepared statement the blocked batch parsed is not left behind.
    assert_eq!(
        simple_rows(&client, "SELECT 1").await[0][0].as_deref(),
        Some("1")
    );
    let stmt = client
        .prepare("SELECT 2")
        .await
        .expect("prepare after a block");
    assert_eq!(
        client
            .query_one(&stmt, &[])
            .await
            .expect("run")
            .get::<_, i32>(0),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_force_the_primary_or_a_group_and_set_lasts_until_reset() {
    let proxy = start_proxy_toml(&analytics_config(REPORTS));
    let client = connect_as_app(&proxy, "shop").await;
    let read = "SELECT inet_server_port()";
    let hinted = |h: &str| format!("/* pgroute.route={h} */ {read}");
    assert_eq!(port_of(&client, &hinted("primary")).await, primary_port());
    assert!(last_route(&client).await.contains("node0 (primary): hint"));
    assert_eq!(
        port_of(&client, &hinted("group:analytics")).await,
        node_port(2)
    );
    let row = client
        .query_one(hinted("group:analytics").as_str(), &[])
        .await
        .expect("extended, hinted");
    assert_eq!(row.get::<_, i32>(0), node_port(2));
    // A hint does not move a write.
    simple_rows(&client, "CREATE TABLE IF NOT EXISTS rules_hinted (id int)").await;
    caught_up();
    let n = client
        .execute(
            "/* pgroute.route=group:analytics */ INSERT INTO rules_hinted VALUES (1)",
            &[],
        )
        .await
        .expect("hinted write runs on the primary");
    assert_eq!(n, 1);
    // A malformed hint is ignored, with a warning; the statement runs as usual.
    let msgs = client
        .simple_query("/* pgroute.route=nowhere */ SELECT inet_server_port()")
        .await
        .expect("malformed hint ignored");
    assert!(!msgs.is_empty());
    // Session-wide.
    simple_rows(&client, "SET pgroute.route = 'primary'").await;
    for _ in 0..4 {
        assert_eq!(port_of(&client, read).await, primary_port());
    }
    assert_eq!(
        simple_rows(&client, "SHOW pgroute.route").await[0][0].as_deref(),
        Some("primary")
    );
    // The statement's own hint wins over the session's.
    assert_eq!(
        port_of(&client, &hinted("group:analytics")).await,
        node_port(2)
    );
    simple_rows(&client, "RESET pgroute.route").await;
    for _ in 0..4 {
        assert_eq!(port_of(&client, read).await, node_port(1));
    }
    let e = client
        .simple_query("SET pgroute.route = 'sideways'")
        .await
        .expect_err("bad route");
    assert_eq!(db_error(&e).code(), &SqlState::INVALID_PARAMETER_VALUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_weights_and_rules_without_reconnecting() {
    // No groups at first: both replicas share reads, node 2 with no weight.
    let first = config(REPLICA_READS, "weight = 0\n");
    let proxy = start_proxy_toml(&first);
    let client = connect_as_app(&proxy, "metabase-1").await;
    for _ in 0..8 {
        assert_eq!(
            port_of(&client, "SELECT inet_server_port()").await,
            node_port(1)
        );
    }
    // A bad file is refused and changes nothing.
    let bad = format!("{first}\n[[rules]]\nname = \"x\"\nkind = \"write\"\nroute = \"replica\"\n");
    let e = proxy.reload(&bad).expect_err("unsafe rule refused");
    assert!(e.contains("rules[0].route"), "{e}");
    let moved = config(REPLICA_READS, "weight = 1\n")
        .replace("name = \"node1\"\n", "name = \"node1\"\nweight = 0\n");
    for _ in 0..4 {
        assert_eq!(
            port_of(&client, "SELECT inet_server_port()").await,
            node_port(1)
        );
    }
    // Re-weighted: node 2 takes the reads, on the same client connection.
    proxy.reload(&moved).expect("reload weights");
    for _ in 0..8 {
        assert_eq!(
            port_of(&client, "SELECT inet_server_port()").await,
            node_port(2)
        );
    }
    // A rule added by reload: this application's reads go to the primary.
    let with_rule = format!(
        "{moved}\n[[rules]]\nname = \"mb\"\napplication_name = \"metabase*\"\nroute = \"primary\"\n"
    );
    proxy.reload(&with_rule).expect("reload rules");
    assert_eq!(
        port_of(&client, "SELECT inet_server_port()").await,
        primary_port()
    );
    assert!(last_route(&client).await.contains("(rule mb)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_replica_finishes_its_long_read_and_takes_no_new_ones() {
    // Node 1 takes no reads at first, so the long read goes to node 2.
    let proxy = start_proxy_toml(&config_nodes(REPLICA_READS, "weight = 0\n", ""));
    let long = proxy.connect().await;
    let started = std::time::Instant::now();
    let long_read = tokio::spawn(async move {
        let rows = simple_rows(&long, "SELECT inet_server_port(), pg_sleep(2)").await;
        rows[0][0].clone()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy
        .reload(&config(REPLICA_READS, "drain = true\n"))
        .expect("drain node 2, node 1 back to weight 1");
    let client = proxy.connect().await;
    for _ in 0..10 {
        assert_eq!(
            port_of(&client, "SELECT inet_server_port()").await,
            node_port(1)
        );
    }
    let port = long_read.await.expect("long read task");
    assert_eq!(
        port,
        Some(node_port(2).to_string()),
        "the running read finished on node 2"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    // Undrained: node 2 takes reads again.
    proxy.reload(&config(REPLICA_READS, "")).expect("undrain");
    let mut ports = BTreeSet::new();
    for _ in 0..10 {
        ports.insert(port_of(&client, "SELECT inet_server_port()").await);
    }
    assert!(ports.contains(&node_port(2)), "{ports:?}");
}

/// `toml` without replica `node`'s `[[nodes]]` entry (as `config` writes it, with no keys).
fn without_node(toml: &str, node: usize) -> String {
    let entry = format!(
        "\n[[nodes]]\nname = \"node{node}\"\naddr = \"127.0.0.1:{}\"\nrole = \"replica\"\n",
        node_port(node)
    );
    assert!(toml.contains(&entry), "{toml}");
    toml.replace(&entry, "")
}

/// Reads until one runs on `port`; false if none did within 10 s.
async fn reads_reach(client: &Client, port: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if port_of(client, "SELECT inet_server_port()").await == port {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_removes_and_renames_nodes_while_clients_stay() {
    let all = config(REPLICA_READS, "");
    let proxy = start_proxy_toml(&without_node(&all, 2));
    let client = proxy.connect().await;
    for _ in 0..6 {
        assert_eq!(
            port_of(&client, "SELECT inet_server_port()").await,
            node_port(1)
        );
    }
    // Added: once the monitor has seen node 2, it takes reads, on the same connection.
    proxy.reload(&all).expect("add node 2");
    assert!(
        reads_reach(&client, node_port(2)).await,
        "node 2 never took a read"
    );
    let nodes = simple_rows(&client, "SHOW pgroute.nodes").await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    // Node 2 without weight, so the long read runs on node 1.
    proxy
        .reload(&all.replace("name = \"node2\"\n", "name = \"node2\"\nweight = 0\n"))
        .expect("node 2 weight 0");
    let long = proxy.connect().await;
    let long_read = tokio::spawn(async move {
        let rows = simple_rows(&long, "SELECT inet_server_port(), pg_sleep(2)").await;
        rows[0][0].clone()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Removed: node 1 takes no new reads; the read running there finishes. Node 2 is renamed
    // node9 at the same time: a new node to pgroute, probed before it takes reads.
    let renamed = without_node(&all, 1).replace("name = \"node2\"", "name = \"node9\"");
    proxy
        .reload(&renamed)
        .expect("remove node 1, rename node 2");
    assert!(
        reads_reach(&client, node_port(2)).await,
        "node9 never took a read"
    );
    for _ in 0..10 {
        assert_eq!(
            port_of(&client, "SELECT inet_server_port()").await,
            node_port(2)
        );
    }
    assert!(last_route(&client).await.starts_with("node9 (replica)"));
    assert_eq!(
        long_read.await.expect("long read task"),
        Some(node_port(1).to_string()),
        "the running read finished on the removed node"
    );
    let nodes = simple_rows(&client, "SHOW pgroute.nodes").await;
    let names: Vec<_> = nodes
        .iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["node0", "node9"],
        "only the configured nodes are listed"
    );
    // Transactions go on to the primary through all of it.
    client.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(
        port_of(&client, "SELECT inet_server_port()").await,
        primary_port()
    );
    client.batch_execute("COMMIT").await.expect("commit");
}

/// The `pgroute` binary reloads its file on SIGHUP, keeps its clients, and keeps the running
/// configuration when the new file is bad.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_and_a_bad_file_changes_nothing() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("pgroute-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("pgroute.toml");
    let node1_only = config_nodes(REPLICA_READS, "", "weight = 0\n");
    std::fs::write(&file, &node1_only).expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgroute"))
        .arg("--config")
        .arg(&file)
        .env("PGROUTE_LOG", "pgroute=info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start pgroute");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("pgroute listening") {
                let port: String = line
                    .split("127.0.0.1:")
                    .nth(1)
                    .unwrap_or_default()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let _ = port_tx.send(port.parse::<u16>().unwrap_or(0));
            }
            lines.lock().unwrap().push(line);
        }
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("pgroute listening");
    let client = common::connect(&conn_str(port, USER, Some(PASSWORD), "postgres")).await;
    for _ in 0..4 {
        assert_eq!(
            port_of(&client, "SELECT inet_server_port()").await,
            node_port(1)
        );
    }
    let hup = |pid: u32| {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -HUP");
    };
    // Node 2 only, now.
    std::fs::write(&file, config_nodes(REPLICA_READS, "weight = 0\n", "")).expect("rewrite");
    hup(child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while port_of(&client, "SELECT inet_server_port()").await != node_port(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "reload not applied: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bad file: rejected, logged, routing unchanged, the client still connected.
    std::fs::write(&file, "listen = 12\n[[rules]]\nname = \"\"\n").expect("bad file");
    hup(child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("reload rejected"))
    {
        assert!(std::time::Instant::now() < deadline, "no rejection logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..4 {
        assert_eq!(
            port_of(&client, "SELECT inet_server_port()").await,
            node_port(2)
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
