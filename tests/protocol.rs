//! End-to-end protocol behaviour through pgroute: session state that follows a client across
//! pooled server connections, prepared statements, pinning, COPY, CancelRequest, extended-protocol
//! details, `BEGIN READ ONLY` routing, and real clients (psql, pgbench).
//!
//! Where a statement ran is proved by the server (`inet_server_port()`, `pg_backend_pid()`);
//! effects are checked on the primary directly, as the superuser, bypassing pgroute. Tests share
//! one cluster and run in parallel, so each uses its own tables, names and lock keys (`proto_`).

mod common;

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use common::raw;
use common::{
    caught_up, cluster, on_primary, primary_port, replica_ports, simple_rows, start_proxy,
    TestProxy, PASSWORD, USER,
};
use futures::{SinkExt, StreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification, SimpleQueryMessage};

/// The monitor marks a node down when a probe takes longer than 10 check intervals (at least
/// 1 s). On two shared cores, with pgbench and a dozen proxies (each probing in a debug build)
/// running at once, 1 s is not always enough, and a primary marked down fails writes with 57P03.
const LAG: &str = "[lag]\ncheck_interval = \"250ms\"\n";

/// For tests that assert reads spread over both replicas, however busy the shared cluster is:
/// even a `SET` makes read-your-writes wait for the replicas to replay the primary's position.
const REPLICA_READS: &str = "[consistency]\nread_your_writes = \"off\"\n\n\
                             [lag]\ncheck_interval = \"250ms\"\n\
                             max_bytes = \"1GB\"\nmax_time = \"1h\"\n";

/// pgroute with the default configuration (but see [`LAG`]) plus `extra` sections.
fn start(extra: &str) -> TestProxy {
    start_proxy(cluster(), &format!("{LAG}\n{extra}"))
}

/// pgroute for tests that count replicas (see [`REPLICA_READS`]), plus `extra` sections.
fn start_replica_reads(extra: &str) -> TestProxy {
    start_proxy(cluster(), &format!("{REPLICA_READS}\n{extra}"))
}
/// Upper bound for any single wait in these tests.
const PATIENCE: Duration = Duration::from_secs(10);

fn config_for(proxy: &TestProxy) -> Config {
    let mut cfg = Config::new();
    cfg.host("127.0.0.1")
        .port(proxy.port)
        .user(USER)
        .password(PASSWORD)
        .dbname("postgres")
        .connect_timeout(PATIENCE);
    cfg
}

/// A client whose StartupMessage carries `application_name`.
async fn connect_as(proxy: &TestProxy, application_name: &str) -> Client {
    let (client, conn) = config_for(proxy)
        .application_name(application_name)
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect as {application_name}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The single value a simple Query returned.
async fn simple_value(client: &Client, sql: &str) -> String {
    let rows = simple_rows(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone().unwrap_or_default()
}

fn code_of(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

/// What one read reports about where it ran and the session settings it saw there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    port: i32,
    pid: i32,
    settings: Vec<String>,
}

/// Reads `current_setting(name)` for each name, with where it ran, through the simple protocol
/// (`simple`) or the extended one.
async fn settings_read(client: &Client, names: &[&str], simple: bool) -> Seen {
    let list: Vec<String> = names
        .iter()
        .map(|n| format!("current_setting('{n}')"))
        .collect();
    let sql = format!(
        "SELECT inet_server_port(), pg_backend_pid(), {}",
        list.join(", ")
    );
    if simple {
        let rows = simple_rows(client, &sql).await;
        let row = &rows[0];
        let num = |i: usize| row[i].as_deref().unwrap_or("").parse::<i32>().expect("int");
        Seen {
            port: num(0),
            pid: num(1),
            settings: row[2..]
                .iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect(),
        }
    } else {
        let row = client.query_one(&sql, &[]).await.expect(&sql);
        Seen {
            port: row.get(0),
            pid: row.get(1),
            settings: (2..row.len()).map(|i| row.get::<_, String>(i)).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Session state across pooled connections.

/// The startup `application_name` is what every read sees, on both replicas and the primary,
/// while another session with another name uses the same pools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_application_name_is_seen_by_every_statement() {
    let proxy = start_replica_reads("[pool]\nmax_size = 3\n");
    let client = connect_as(&proxy, "proto-startup-app").await;
    let noise = connect_as(&proxy, "proto-startup-noise").await;
    let noise_task = tokio::spawn(async move {
        for i in 0..60 {
            let seen = settings_read(&noise, &["application_name"], i % 2 == 0).await;
            assert_eq!(
                seen.settings,
                ["proto-startup-noise"],
                "noise read {i}: {seen:?}"
            );
        }
    });
    let mut backends = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for i in 0..60 {
        let seen = if i % 10 == 9 {
            // Inside a transaction: the primary.
            let rows = simple_rows(
                &client,
                "BEGIN; SELECT inet_server_port(), pg_backend_pid(), \
                 current_setting('application_name'); COMMIT",
            )
            .await;
            let row = &rows[0];
            Seen {
                port: row[0].as_deref().unwrap().parse().unwrap(),
                pid: row[1].as_deref().unwrap().parse().unwrap(),
                settings: vec![row[2].clone().unwrap()],
            }
        } else {
            settings_read(&client, &["application_name"], i % 2 == 0).await
        };
        assert_eq!(seen.settings, ["proto-startup-app"], "read {i}: {seen:?}");
        if i % 4 == 0 {
            let shown = simple_value(&client, "SHOW application_name").await;
            assert_eq!(shown, "proto-startup-app", "SHOW after read {i}");
        }
        ports.insert(seen.port);
        backends.insert((seen.port, seen.pid));
    }
    noise_task.await.expect("noise session");
    let mut want = replica_ports();
    want.insert(primary_port());
    assert_eq!(
        ports, want,
        "reads should reach both replicas and the primary"
    );
    assert!(backends.len() >= 3, "{backends:?}");
}

/// `SET search_path` applies to unqualified names on the replicas and on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_applies_on_replicas_and_primary() {
    on_primary(
        "DROP SCHEMA IF EXISTS proto_sp CASCADE;\n\
         CREATE SCHEMA proto_sp AUTHORIZATION app;\n\
         CREATE TABLE proto_sp.proto_sp_t(x int);\n\
         INSERT INTO proto_sp.proto_sp_t VALUES (7);\n\
         CREATE TABLE proto_sp.proto_sp_log(i int);\n\
         ALTER TABLE proto_sp.proto_sp_t OWNER TO app;\n\
         ALTER TABLE proto_sp.proto_sp_log OWNER TO app;",
    );
    caught_up();
    let proxy = start_replica_reads("");
    let client = proxy.connect().await;
    let err = client
        .simple_query("SELECT x FROM proto_sp_t")
        .await
        .expect_err("not on the default search_path");
    assert_eq!(code_of(&err), Some(&SqlState::UNDEFINED_TABLE), "{err}");
    client
        .simple_query("SET search_path TO proto_sp, public")
        .await
        .expect("SET search_path");
    let mut ports = BTreeSet::new();
    let mut inserted = 0;
    for i in 0..50 {
        if i % 5 == 4 {
            let row = client
                .query_one(
                    "INSERT INTO proto_sp_log VALUES ($1) RETURNING inet_server_port()",
                    &[&i],
                )
                .await
                .unwrap_or_else(|e| panic!("insert {i}: {e}"));
            ports.insert(row.get::<_, i32>(0));
            inserted += 1;
        } else if i % 2 == 0 {
            let rows = simple_rows(&client, "SELECT x, inet_server_port() FROM proto_sp_t").await;
            assert_eq!(rows[0][0].as_deref(), Some("7"), "statement {i}");
            ports.insert(rows[0][1].as_deref().unwrap().parse().unwrap());
        } else {
            let row = client
                .query_one("SELECT x, inet_server_port() FROM proto_sp_t", &[])
                .await
                .unwrap_or_else(|e| panic!("statement {i}: {e}"));
            assert_eq!(row.get::<_, i32>(0), 7);
            ports.insert(row.get::<_, i32>(1));
        }
    }
    assert_eq!(
        on_primary("SELECT count(*) FROM proto_sp.proto_sp_log"),
        inserted.to_string()
    );
    let mut want = replica_ports();
    want.insert(primary_port());
    assert_eq!(ports, want, "reads on both replicas, writes on the primary");
}

/// `SET TIME ZONE` changes how timestamps are shown, wherever the next read runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_zone_applies_to_every_read() {
    let proxy = start_replica_reads("");
    let client = proxy.connect().await;
    client
        .simple_query("SET TIME ZONE 'America/New_York'")
        .await
        .expect("SET TIME ZONE");
    let mut ports = BTreeSet::new();
    for i in 0..30 {
        let sql = "SELECT now()::text, '2024-01-15 12:00:00+00'::timestamptz::text, \
                   inet_server_port()";
        let (now, fixed, port) = if i % 2 == 0 {
            let rows = simple_rows(&client, sql).await;
            let r = &rows[0];
            (
                r[0].clone().unwrap(),
                r[1].clone().unwrap(),
                r[2].as_deref().unwrap().parse::<i32>().unwrap(),
            )
        } else {
            let r = client.query_one(sql, &[]).await.expect(sql);
            (r.get(0), r.get(1), r.get(2))
        };
        assert!(
            now.ends_with("-05") || now.ends_with("-04"),
            "now() in New York, read {i}: {now}"
        );
        assert_eq!(fixed, "2024-01-15 07:00:00-05", "read {i}");
        ports.insert(port);
    }
    assert_eq!(ports, replica_ports());
}

/// The settings a fresh session sees (the servers' defaults for what it did not ask for).
async fn defaults(proxy: &TestProxy, names: &[&str]) -> Vec<String> {
    let fresh = connect_as(proxy, "proto-defaults").await;
    settings_read(&fresh, names, true).await.settings
}

/// After `RESET ALL` or `DISCARD ALL`, every statement sees the startup `application_name` and
/// the default time zone and search_path again, whichever server connection it lands on.
async fn check_reset(proxy: &TestProxy, reset: &str) {
    let names = ["application_name", "TimeZone", "search_path", "work_mem"];
    let mut want = defaults(proxy, &names).await;
    want[0] = format!("proto-{}", reset.replace(' ', "-").to_lowercase());
    // What PostgreSQL itself does: back to the startup value.
    let (direct, conn) = Config::new()
        .host("127.0.0.1")
        .port(cluster().port(0))
        .user(USER)
        .password(PASSWORD)
        .dbname("postgres")
        .application_name(&want[0])
        .connect(NoTls)
        .await
        .expect("connect to the primary");
    tokio::spawn(conn);
    for sql in ["SET application_name = 'proto-changed'", reset] {
        direct.simple_query(sql).await.expect(sql);
    }
    let value = simple_value(&direct, "SHOW application_name").await;
    assert_eq!(value, want[0], "PostgreSQL, after {reset}");
    drop(direct);

    let client = connect_as(proxy, &want[0]).await;
    let before = settings_read(&client, &names, true).await;
    assert_eq!(before.settings, want, "before SET");
    client
        .simple_query(
            "SET application_name = 'proto-changed'; SET TIME ZONE 'Asia/Tokyo'; \
             SET search_path TO pg_catalog; SET work_mem = '3MB'",
        )
        .await
        .expect("SET");
    for i in 0..6 {
        let seen = settings_read(&client, &names, i % 2 == 0).await;
        assert_eq!(
            seen.settings,
            ["proto-changed", "Asia/Tokyo", "pg_catalog", "3MB"],
            "after SET, read {i}: {seen:?}"
        );
    }
    client.simple_query(reset).await.expect(reset);
    let mut ports = BTreeSet::new();
    for i in 0..30 {
        let seen = settings_read(&client, &names, i % 2 == 0).await;
        assert_eq!(seen.settings, want, "after {reset}, read {i}: {seen:?}");
        ports.insert(seen.port);
    }
    assert_eq!(ports, replica_ports());
    // And on the primary.
    let rows = simple_rows(
        &client,
        "BEGIN; SELECT current_setting('application_name'), current_setting('TimeZone'), \
         current_setting('search_path'), current_setting('work_mem'); COMMIT",
    )
    .await;
    let got: Vec<String> = rows[0].iter().map(|v| v.clone().unwrap()).collect();
    assert_eq!(got, want, "after {reset}, in a transaction on the primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_all_restores_startup_and_default_settings() {
    let proxy = start_replica_reads("");
    check_reset(&proxy, "RESET ALL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_restores_startup_and_default_settings() {
    let proxy = start_replica_reads("");
    check_reset(&proxy, "DISCARD ALL").await;
}

/// `SET LOCAL` lasts for its transaction only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_local_does_not_outlive_its_transaction() {
    let proxy = start_replica_reads("");
    let mut client = connect_as(&proxy, "proto-local").await;
    let names = ["application_name", "work_mem", "TimeZone"];
    let before = settings_read(&client, &names, true).await.settings;
    {
        let tx = client.transaction().await.expect("BEGIN");
        tx.batch_execute(
            "SET LOCAL application_name = 'proto-local-inside'; SET LOCAL work_mem = '5MB'; \
             SET LOCAL TIME ZONE 'Asia/Tokyo'",
        )
        .await
        .expect("SET LOCAL");
        let row = tx
            .query_one(
                "SELECT current_setting('application_name'), current_setting('work_mem'), \
                 current_setting('TimeZone')",
                &[],
            )
            .await
            .expect("inside");
        let inside: Vec<String> = (0..3).map(|i| row.get(i)).collect();
        assert_eq!(inside, ["proto-local-inside", "5MB", "Asia/Tokyo"]);
        tx.commit().await.expect("COMMIT");
    }
    for i in 0..30 {
        let seen = settings_read(&client, &names, i % 2 == 0).await;
        assert_eq!(seen.settings, before, "after COMMIT, read {i}: {seen:?}");
    }
}

/// A `SET` in a transaction that rolls back (explicitly, or after an error) is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_in_a_rolled_back_transaction_does_not_stick() {
    let proxy = start_replica_reads("");
    let mut client = connect_as(&proxy, "proto-rollback").await;
    let names = ["application_name", "work_mem"];
    let before = settings_read(&client, &names, true).await.settings;
    {
        let tx = client.transaction().await.expect("BEGIN");
        tx.batch_execute("SET application_name = 'proto-rolled-back'; SET work_mem = '6MB'")
            .await
            .expect("SET");
        let row = tx
            .query_one("SELECT current_setting('application_name')", &[])
            .await
            .expect("inside");
        assert_eq!(row.get::<_, String>(0), "proto-rolled-back");
        tx.rollback().await.expect("ROLLBACK");
    }
    for i in 0..30 {
        let seen = settings_read(&client, &names, i % 2 == 0).await;
        assert_eq!(seen.settings, before, "after ROLLBACK, read {i}: {seen:?}");
    }
    // A failed transaction: the SET is undone by the ROLLBACK that ends it.
    client.simple_query("BEGIN").await.expect("BEGIN");
    client
        .simple_query("SET application_name = 'proto-failed'")
        .await
        .expect("SET");
    client
        .simple_query("SELECT 1/0")
        .await
        .expect_err("division by zero");
    client.simple_query("ROLLBACK").await.expect("ROLLBACK");
    for i in 0..30 {
        let seen = settings_read(&client, &names, i % 2 == 0).await;
        assert_eq!(
            seen.settings, before,
            "after a failed transaction, read {i}: {seen:?}"
        );
    }
    // A SET that commits does stick.
    client
        .simple_query("BEGIN; SET application_name = 'proto-committed'; COMMIT")
        .await
        .expect("commit a SET");
    for i in 0..10 {
        let seen = settings_read(&client, &names, i % 2 == 0).await;
        assert_eq!(seen.settings[0], "proto-committed", "read {i}: {seen:?}");
    }
}

/// The same, with the whole transaction in one simple Query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_rolled_back_within_one_query_does_not_stick() {
    let proxy = start_replica_reads("");
    let client = connect_as(&proxy, "proto-rollback-one").await;
    client
        .simple_query("BEGIN; SET application_name = 'proto-one-query'; ROLLBACK")
        .await
        .expect("BEGIN; SET; ROLLBACK");
    for i in 0..20 {
        let seen = settings_read(&client, &["application_name"], i % 2 == 0).await;
        assert_eq!(
            seen.settings,
            ["proto-rollback-one"],
            "the server rolled the SET back, read {i} on {seen:?}"
        );
    }
}

/// `ROLLBACK TO SAVEPOINT` undoes a `SET` made after the savepoint, and only that one; the
/// transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_savepoint_undoes_only_the_sets_after_it() {
    let proxy = start_replica_reads("");
    let client = connect_as(&proxy, "proto-savepoint").await;
    for sql in [
        "BEGIN",
        "SET work_mem = '7MB'",
        "SAVEPOINT s1",
        "SET application_name = 'proto-after-savepoint'",
        "ROLLBACK TO SAVEPOINT s1",
        "COMMIT",
    ] {
        client.simple_query(sql).await.expect(sql);
    }
    for i in 0..20 {
        let seen = settings_read(&client, &["application_name", "work_mem"], i % 2 == 0).await;
        assert_eq!(
            seen.settings,
            ["proto-savepoint", "7MB"],
            "PostgreSQL undid only the SET after the savepoint; read {i} on {seen:?}"
        );
    }
}

/// Sessions with different settings sharing small pools never see each other's settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_sessions_keep_their_own_settings() {
    let proxy = start_replica_reads("[pool]\nmax_size = 2\n");
    let zones = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"];
    let mut tasks = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let name = format!("proto-mix-{i}");
        let client = connect_as(&proxy, &name).await;
        client
            .simple_query(&format!("SET TIME ZONE '{zone}'"))
            .await
            .expect("SET TIME ZONE");
        let zone = zone.to_string();
        tasks.push(tokio::spawn(async move {
            let mut ports = BTreeSet::new();
            for n in 0..100 {
                let seen =
                    settings_read(&client, &["application_name", "TimeZone"], n % 2 == 0).await;
                assert_eq!(
                    seen.settings,
                    [name.clone(), zone.clone()],
                    "read {n}: {seen:?}"
                );
                ports.insert(seen.port);
            }
            ports
        }));
    }
    let mut ports = BTreeSet::new();
    for t in tasks {
        ports.extend(t.await.expect("session task"));
    }
    assert_eq!(ports, replica_ports());
}

// ---------------------------------------------------------------------------------------------
// 2. Prepared statements.

/// SQL-level PREPARE / EXECUTE / DEALLOCATE, in one Query and across Queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_execute_deallocate_work_repeatedly() {
    let proxy = start("");
    let client = proxy.connect().await;
    for round in 0..10 {
        let rows = simple_rows(
            &client,
            "PREPARE proto_p AS SELECT $1::int * 2; EXECUTE proto_p(21); DEALLOCATE proto_p;",
        )
        .await;
        assert_eq!(rows, vec![vec![Some("42".to_owned())]], "round {round}");
    }
    for round in 0..10 {
        client
            .simple_query("PREPARE proto_q(int) AS SELECT $1 + 1, pg_backend_pid()")
            .await
            .unwrap_or_else(|e| panic!("PREPARE, round {round}: {e}"));
        let mut pids = BTreeSet::new();
        for i in 0..5 {
            let rows = simple_rows(&client, &format!("EXECUTE proto_q({i})")).await;
            assert_eq!(rows[0][0].as_deref(), Some((i + 1).to_string().as_str()));
            pids.insert(rows[0][1].clone().unwrap());
            // A read in between must not take the session off the connection holding proto_q.
            client.query_one("SELECT 1", &[]).await.expect("read");
        }
        assert_eq!(pids.len(), 1, "EXECUTE ran on one backend: {pids:?}");
        client
            .simple_query("DEALLOCATE proto_q")
            .await
            .unwrap_or_else(|e| panic!("DEALLOCATE, round {round}: {e}"));
    }
    let err = client
        .simple_query("EXECUTE proto_q(1)")
        .await
        .expect_err("deallocated");
    assert_eq!(
        code_of(&err),
        Some(&SqlState::UNDEFINED_PSTATEMENT),
        "{err}"
    );
}

/// tokio-postgres closes dropped statements; preparing (the same text) again works, also from
/// other sessions that share the server-side statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_statements_can_be_prepared_again() {
    let proxy = start("");
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    for round in 0..30i32 {
        let sa = a.prepare("SELECT $1::int * 3").await.expect("prepare a");
        let sb = b.prepare("SELECT $1::int * 3").await.expect("prepare b");
        assert_eq!(
            a.query_one(&sa, &[&round])
                .await
                .expect("a")
                .get::<_, i32>(0),
            round * 3
        );
        drop(sa);
        // b's statement lives on after a closed its own.
        assert_eq!(
            b.query_one(&sb, &[&round])
                .await
                .expect("b")
                .get::<_, i32>(0),
            round * 3
        );
        if round % 2 == 0 {
            drop(sb);
        } else {
            std::mem::forget(sb);
        }
    }
}

/// After `DEALLOCATE ALL` (and `DISCARD ALL`), a statement prepared before is gone, as in
/// PostgreSQL: 26000. Preparing again works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_all_forgets_protocol_level_statements() {
    let proxy = start("");
    let client = proxy.connect().await;
    for reset in ["DEALLOCATE ALL", "DISCARD ALL"] {
        let stmt = client
            .prepare("SELECT $1::int + 5, inet_server_port()")
            .await
            .expect("prepare");
        for i in 0..4i32 {
            let row = client.query_one(&stmt, &[&i]).await.expect("execute");
            assert_eq!(row.get::<_, i32>(0), i + 5);
        }
        client.simple_query(reset).await.expect(reset);
        for i in 0..4i32 {
            let err = client
                .query_one(&stmt, &[&i])
                .await
                .expect_err("statement deallocated");
            assert_eq!(
                code_of(&err),
                Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
                "after {reset}, execution {i}: {err}"
            );
        }
        let again = client
            .prepare("SELECT $1::int + 5, inet_server_port()")
            .await
            .expect("prepare again");
        for i in 0..6i32 {
            let row = client
                .query_one(&again, &[&i])
                .await
                .expect("execute again");
            assert_eq!(row.get::<_, i32>(0), i + 5);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Pinning.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_table_pins_the_session_to_its_primary_backend() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .simple_query("CREATE TEMP TABLE proto_tmp(x int); INSERT INTO proto_tmp VALUES (1)")
        .await
        .expect("temp table");
    let mut backends = BTreeSet::new();
    for i in 0..20 {
        let (x, port, pid) = if i % 2 == 0 {
            let rows = simple_rows(
                &client,
                "SELECT x, inet_server_port(), pg_backend_pid() FROM proto_tmp",
            )
            .await;
            let r = &rows[0];
            let p = |j: usize| r[j].as_deref().unwrap().parse::<i32>().unwrap();
            (p(0), p(1), p(2))
        } else {
            let r = client
                .query_one(
                    "SELECT x, inet_server_port(), pg_backend_pid() FROM proto_tmp",
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("read {i}: {e}"));
            (r.get(0), r.get(1), r.get(2))
        };
        assert_eq!(x, 1);
        assert_eq!(port, primary_port(), "read {i}");
        backends.insert(pid);
    }
    assert_eq!(backends.len(), 1, "{backends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_advisory_lock_is_held_until_unlock_or_disconnect() {
    let proxy = start("");
    let holder = proxy.connect().await;
    let other = proxy.connect().await;
    let try_lock = "SELECT pg_try_advisory_lock(424242)";
    let unlock = "SELECT pg_advisory_unlock(424242)";
    simple_rows(&holder, "SELECT pg_advisory_lock(424242)").await;
    for i in 0..10 {
        // The holder keeps reading and writing meanwhile; its lock must stay.
        holder
            .query_one("SELECT 1", &[])
            .await
            .expect("holder read");
        let got: bool = other.query_one(try_lock, &[]).await.expect("try").get(0);
        assert!(!got, "lock taken by another session, attempt {i}");
    }
    let released: bool = holder.query_one(unlock, &[]).await.expect("unlock").get(0);
    assert!(released, "the holder's session holds the lock");
    let got: bool = other.query_one(try_lock, &[]).await.expect("try").get(0);
    assert!(got, "free after unlock");
    let released: bool = other.query_one(unlock, &[]).await.expect("unlock").get(0);
    assert!(released);

    // Held again, then the holder disconnects: PostgreSQL releases it with the backend.
    simple_rows(&holder, "SELECT pg_advisory_lock(424242)").await;
    let got: bool = other.query_one(try_lock, &[]).await.expect("try").get(0);
    assert!(!got, "held again");
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got: bool = other.query_one(try_lock, &[]).await.expect("try").get(0);
        if got {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock outlived its session's disconnect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other
        .simple_query("SELECT pg_advisory_unlock_all()")
        .await
        .expect("unlock all");
}

/// A client whose connection is driven here, so that notifications can be received.
async fn connect_listener(
    proxy: &TestProxy,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<Notification>) {
    let (client, mut conn) = config_for(proxy).connect(NoTls).await.expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = messages.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send(n);
            }
        }
    });
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_receives_notifications_from_other_sessions() {
    let proxy = start("");
    let (listener, mut notifications) = connect_listener(&proxy).await;
    listener
        .simple_query("LISTEN proto_chan")
        .await
        .expect("LISTEN");
    let notifier = proxy.connect().await;
    for i in 0..5 {
        // Reads by the listener in between must not take it off its LISTENing backend.
        listener.query_one("SELECT 1", &[]).await.expect("read");
        notifier
            .simple_query(&format!("NOTIFY proto_chan, 'hi {i}'"))
            .await
            .expect("NOTIFY");
        let n = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
            .await
            .unwrap_or_else(|_| panic!("notification {i} within 5 s"))
            .expect("listener connection open");
        assert_eq!(
            (n.channel(), n.payload()),
            ("proto_chan", format!("hi {i}").as_str())
        );
    }
    // Also through pg_notify() from the extended protocol.
    notifier
        .query("SELECT pg_notify('proto_chan', 'via function')", &[])
        .await
        .expect("pg_notify");
    let n = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("pg_notify notification within 5 s")
        .expect("open");
    assert_eq!(n.payload(), "via function");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_with_hold_is_fetched_across_statements() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .simple_query("DECLARE proto_c CURSOR WITH HOLD FOR SELECT generate_series(1, 10)")
        .await
        .expect("DECLARE");
    client
        .query_one("SELECT 1", &[])
        .await
        .expect("a read in between");
    let first = simple_rows(&client, "FETCH 5 FROM proto_c").await;
    let want = |r: std::ops::RangeInclusive<i32>| -> Vec<Vec<Option<String>>> {
        r.map(|i| vec![Some(i.to_string())]).collect()
    };
    assert_eq!(first, want(1..=5));
    client
        .query_one("SELECT 2", &[])
        .await
        .expect("a read in between");
    let second: Vec<i32> = client
        .query("FETCH 5 FROM proto_c", &[])
        .await
        .expect("FETCH")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(second, (6..=10).collect::<Vec<_>>());
    assert!(simple_rows(&client, "FETCH 5 FROM proto_c")
        .await
        .is_empty());
    client.simple_query("CLOSE proto_c").await.expect("CLOSE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pool_mode_keeps_one_backend_per_session() {
    let proxy = start("[pool]\nmode = \"session\"\n");
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let mut seen_a = BTreeSet::new();
    let mut seen_b = BTreeSet::new();
    for i in 0..20 {
        let sql = "SELECT inet_server_port(), pg_backend_pid()";
        let ra = a.query_one(sql, &[]).await.expect("a");
        seen_a.insert((ra.get::<_, i32>(0), ra.get::<_, i32>(1)));
        let rb = simple_rows(&b, sql).await;
        seen_b.insert((
            rb[0][0].as_deref().unwrap().parse::<i32>().unwrap(),
            rb[0][1].as_deref().unwrap().parse::<i32>().unwrap(),
        ));
        if i == 10 {
            a.simple_query("BEGIN; SELECT 1; COMMIT")
                .await
                .expect("transaction");
        }
    }
    assert_eq!(seen_a.len(), 1, "{seen_a:?}");
    assert_eq!(seen_b.len(), 1, "{seen_b:?}");
    assert_ne!(seen_a, seen_b, "two sessions, two backends");
    assert_eq!(seen_a.iter().next().unwrap().0, primary_port());
}

// ---------------------------------------------------------------------------------------------
// 4. COPY.

fn copy_rows(n: i32) -> String {
    (1..=n).map(|i| format!("{i}\tname {i} ✓\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_of_10000_rows() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_copy; CREATE TABLE proto_copy(id int PRIMARY KEY, name text)",
        )
        .await
        .expect("create");
    let data = copy_rows(10_000);
    let sink = client
        .copy_in::<_, Bytes>("COPY proto_copy FROM STDIN")
        .await
        .expect("COPY FROM STDIN");
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(7_000) {
        sink.send(Bytes::copy_from_slice(chunk))
            .await
            .expect("CopyData");
    }
    let copied = tokio::time::timeout(PATIENCE, sink.finish())
        .await
        .expect("COPY finished within 10 s")
        .expect("COPY");
    assert_eq!(copied, 10_000);
    assert_eq!(on_primary("SELECT count(*) FROM proto_copy"), "10000");
    // The session goes on, and reads its own copy.
    let count: i64 = tokio::time::timeout(
        PATIENCE,
        client.query_one("SELECT count(*) FROM proto_copy", &[]),
    )
    .await
    .expect("read after COPY within 10 s")
    .expect("the first statement after COPY FROM STDIN (extended protocol)")
    .get(0);
    assert_eq!(count, 10_000);

    let stream = client
        .copy_out("COPY (SELECT * FROM proto_copy ORDER BY id) TO STDOUT")
        .await
        .expect("COPY TO STDOUT");
    let chunks: Vec<Bytes> = tokio::time::timeout(
        PATIENCE,
        stream.map(|c| c.expect("CopyData")).collect::<Vec<_>>(),
    )
    .await
    .expect("COPY out within 10 s");
    let out: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(out).expect("UTF-8"), data);
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("after copy out")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_binary_format() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_copy_bin; CREATE TABLE proto_copy_bin(id int, v bigint)",
        )
        .await
        .expect("create");
    // PGCOPY header, then per row: field count, then (length, value) per field; -1 trailer.
    let mut buf = BytesMut::new();
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
    for i in 1..=10_000i32 {
        buf.put_i16(2);
        buf.put_i32(4);
        buf.put_i32(i);
        buf.put_i32(8);
        buf.put_i64(i64::from(i) * 1_000_000_007);
    }
    buf.put_i16(-1);
    let sink = client
        .copy_in::<_, Bytes>("COPY proto_copy_bin FROM STDIN (FORMAT binary)")
        .await
        .expect("COPY binary");
    futures::pin_mut!(sink);
    sink.send(buf.freeze()).await.expect("CopyData");
    let n = tokio::time::timeout(PATIENCE, sink.finish())
        .await
        .expect("within 10 s")
        .expect("COPY");
    assert_eq!(n, 10_000);
    assert_eq!(
        on_primary("SELECT count(*), sum(v) FROM proto_copy_bin"),
        format!("10000|{}", (1..=10_000i64).sum::<i64>() * 1_000_000_007)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_copy_in_reports_the_error_and_the_session_goes_on() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_copy_bad; CREATE TABLE proto_copy_bad(id int, name text)",
        )
        .await
        .expect("create");
    let mut data = copy_rows(500);
    data.push_str("not-a-number\tbad\n");
    data.push_str(&copy_rows(500));
    let result = tokio::time::timeout(PATIENCE, async {
        let sink = client
            .copy_in::<_, Bytes>("COPY proto_copy_bad FROM STDIN")
            .await?;
        futures::pin_mut!(sink);
        for chunk in data.as_bytes().chunks(1_000) {
            sink.send(Bytes::copy_from_slice(chunk)).await?;
        }
        sink.finish().await
    })
    .await
    .expect("COPY answered within 10 s");
    let err = result.expect_err("a bad row fails the COPY");
    assert_eq!(
        code_of(&err),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{err}"
    );
    assert_eq!(on_primary("SELECT count(*) FROM proto_copy_bad"), "0");
    for i in 0..10 {
        let row = tokio::time::timeout(
            PATIENCE,
            client.query_one("SELECT count(*), $1::int FROM proto_copy_bad", &[&i]),
        )
        .await
        .unwrap_or_else(|_| panic!("statement {i} after the failed COPY answered within 10 s"))
        .unwrap_or_else(|e| panic!("statement {i} after the failed COPY: {e}"));
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>(1)), (0, i));
    }
    // A write, too, and a simple query.
    client
        .execute("INSERT INTO proto_copy_bad VALUES (1, 'ok')", &[])
        .await
        .expect("insert after the failed COPY");
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM proto_copy_bad").await,
        "1"
    );
}

/// psql's `\copy` in both directions (simple-protocol COPY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_in_and_out() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let proxy = start("");
    let url = proxy.url();
    let (ok, _, err) = common::psql(
        &proxy,
        &[
            "-c",
            "DROP TABLE IF EXISTS proto_psql_copy; CREATE TABLE proto_psql_copy(id int, name text)",
        ],
    );
    assert!(ok, "{err}");
    let data = copy_rows(2_000);
    let input = data.clone();
    let url_in = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("psql")
            .arg(&url_in)
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "\\copy proto_psql_copy FROM STDIN",
            ])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("feed psql");
        child.wait_with_output().expect("psql")
    })
    .await
    .expect("psql task");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(on_primary("SELECT count(*) FROM proto_psql_copy"), "2000");
    let (ok, copied, err) = common::psql(
        &proxy,
        &[
            "-c",
            "\\copy (SELECT * FROM proto_psql_copy ORDER BY id) TO STDOUT",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(format!("{copied}\n"), data);
}

// ---------------------------------------------------------------------------------------------
// 5. CancelRequest.

/// Which node (0 primary, 1, 2 replicas) runs a statement containing `marker` right now.
fn running_on(marker: &str) -> Vec<usize> {
    (0..3)
        .filter(|&n| {
            let sql = format!(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
            );
            cluster().psql(n, &sql).map(|c| c != "0").unwrap_or(false)
        })
        .collect()
}

/// Starts `run` (a sleep marked with `marker`), cancels it once it has run for 300 ms and shows
/// in `pg_stat_activity`, and returns (its error, time from cancel to error, nodes it ran on).
async fn cancel_after_300ms(
    token: tokio_postgres::CancelToken,
    run: impl std::future::Future<Output = Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>>,
    marker: &str,
) -> (tokio_postgres::Error, Duration, Vec<usize>) {
    let marker = marker.to_owned();
    let canceller = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let nodes = loop {
            let m = marker.clone();
            let nodes = tokio::task::spawn_blocking(move || running_on(&m))
                .await
                .expect("pg_stat_activity");
            if !nodes.is_empty() || Instant::now() > deadline {
                break nodes;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let at = Instant::now();
        token.cancel_query(NoTls).await.expect("send CancelRequest");
        (at, nodes)
    };
    let started = Instant::now();
    let (result, (cancelled_at, nodes)) = tokio::join!(
        async { tokio::time::timeout(Duration::from_secs(12), run).await },
        canceller
    );
    let err = result
        .expect("the query ended")
        .expect_err("the query should be cancelled");
    let took = cancelled_at.elapsed();
    assert!(started.elapsed() < Duration::from_secs(9), "it slept on");
    (err, took, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_read_on_a_replica() {
    let proxy = start("");
    let client = proxy.connect().await;
    let sql = "SELECT pg_sleep(10) /* proto-cancel-replica */";
    let (err, took, nodes) = cancel_after_300ms(
        client.cancel_token(),
        client.simple_query(sql),
        "proto-cancel-replica",
    )
    .await;
    assert_eq!(code_of(&err), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        took < Duration::from_millis(1500),
        "cancelled after {took:?}"
    );
    assert!(
        nodes.len() == 1 && nodes[0] != 0,
        "the sleep ran on a replica: {nodes:?}"
    );
    let one = simple_value(&client, "SELECT 1").await;
    assert_eq!(one, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_statement_in_a_transaction_on_the_primary() {
    let proxy = start("");
    let mut client = proxy.connect().await;
    let tx = client.transaction().await.expect("BEGIN");
    let sql = "SELECT pg_sleep(10) /* proto-cancel-primary */";
    let (err, took, nodes) = cancel_after_300ms(
        tx.cancel_token(),
        tx.simple_query(sql),
        "proto-cancel-primary",
    )
    .await;
    assert_eq!(code_of(&err), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        took < Duration::from_millis(1500),
        "cancelled after {took:?}"
    );
    assert_eq!(nodes, [0], "the sleep ran on the primary");
    let err = tx
        .query_one("SELECT 1", &[])
        .await
        .expect_err("transaction failed");
    assert_eq!(code_of(&err), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    tx.rollback().await.expect("ROLLBACK");
    assert_eq!(simple_value(&client, "SELECT 2").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_for_an_idle_session_is_harmless() {
    let proxy = start("");
    let client = proxy.connect().await;
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    for _ in 0..3 {
        client
            .cancel_token()
            .cancel_query(NoTls)
            .await
            .expect("cancel");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    let rows = simple_rows(&client, "SELECT pg_sleep(0.5), 'slept'").await;
    assert_eq!(rows[0][1].as_deref(), Some("slept"));
    assert!(began.elapsed() >= Duration::from_millis(450));
    let row = client.query_one("SELECT 3", &[]).await.expect("extended");
    assert_eq!(row.get::<_, i32>(0), 3);
    // A cancel with a wrong key is ignored too.
    let other = proxy.connect().await;
    let token = other.cancel_token();
    drop(other);
    token
        .cancel_query(NoTls)
        .await
        .expect("cancel with a stale key");
    assert_eq!(simple_value(&client, "SELECT 4").await, "4");
}

// ---------------------------------------------------------------------------------------------
// 6. Extended protocol details.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mixed_queries_from_one_client_are_all_answered() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_pipe; CREATE TABLE proto_pipe(id int PRIMARY KEY)",
        )
        .await
        .expect("create");
    for round in 0..3 {
        let futures = (0..20i32).map(|i| {
            let client = &client;
            async move {
                let id = round * 100 + i;
                match i % 4 {
                    0 => {
                        let row = client
                            .query_one("INSERT INTO proto_pipe VALUES ($1) RETURNING id", &[&id])
                            .await
                            .unwrap_or_else(|e| panic!("insert {id}: {e}"));
                        (i, row.get::<_, i32>(0) - id)
                    }
                    1 => {
                        let rows = client
                            .simple_query(&format!("SELECT {id} + 1"))
                            .await
                            .unwrap_or_else(|e| panic!("simple {id}: {e}"));
                        let v = rows
                            .iter()
                            .find_map(|m| match m {
                                SimpleQueryMessage::Row(r) => r.get(0),
                                _ => None,
                            })
                            .expect("a row")
                            .parse::<i32>()
                            .unwrap();
                        (i, v - id - 1)
                    }
                    _ => {
                        let row = client
                            .query_one("SELECT $1::int * 2", &[&id])
                            .await
                            .unwrap_or_else(|e| panic!("read {id}: {e}"));
                        (i, row.get::<_, i32>(0) - id * 2)
                    }
                }
            }
        });
        let results = tokio::time::timeout(PATIENCE, futures::future::join_all(futures))
            .await
            .expect("every pipelined query answered within 10 s");
        for (i, delta) in results {
            assert_eq!(delta, 0, "round {round}, query {i}");
        }
    }
    assert_eq!(on_primary("SELECT count(*) FROM proto_pipe"), "15");
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM proto_pipe").await,
        "15"
    );
}

/// A query parameter, for arrays of them built ahead of a `join!`.
type Param<'a> = &'a (dyn ToSql + Sync);

/// Pipelined requests where the first fails: only that one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_a_pipeline_fails_only_its_own_request() {
    let proxy = start("");
    let client = proxy.connect().await;
    for round in 0..5 {
        let (zero, after): (i32, &str) = (0, "after");
        let (p_zero, p_round, p_after): ([Param; 1], [Param; 1], [Param; 1]) =
            ([&zero], [&round], [&after]);
        let (bad, second, simple, fourth) = tokio::time::timeout(PATIENCE, async {
            tokio::join!(
                client.query_one("SELECT 1 / $1::int", &p_zero),
                client.query_one("SELECT $1::int + 1", &p_round),
                client.simple_query("SELECT 1/0; SELECT 2"),
                client.query_one("SELECT $1::text", &p_after),
            )
        })
        .await
        .expect("answered within 10 s");
        let bad = bad.expect_err("division by zero");
        assert_eq!(code_of(&bad), Some(&SqlState::DIVISION_BY_ZERO));
        assert_eq!(second.expect("second").get::<_, i32>(0), round + 1);
        let simple = simple.expect_err("a failing statement stops its simple Query");
        assert_eq!(code_of(&simple), Some(&SqlState::DIVISION_BY_ZERO));
        assert_eq!(fourth.expect("fourth").get::<_, String>(0), "after");
    }
}

/// One extended batch (a single Sync) whose first statement fails: the server skips the rest up
/// to Sync, and the next batch works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_discards_the_rest_of_the_batch_until_sync() {
    let proxy = start("");
    let mut raw = raw::RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    for round in 0..5 {
        let mut out = BytesMut::new();
        raw::statement(&mut out, "SELECT 1/0");
        raw::statement(&mut out, "SELECT 2");
        raw::sync(&mut out);
        raw::statement(&mut out, &format!("SELECT {round}"));
        raw::sync(&mut out);
        let replies = raw::codes_only(raw.exchange(&out).await);
        use raw::Reply::*;
        assert_eq!(
            replies,
            vec![
                // `1/0` is folded when the statement is planned, at Bind.
                ParseComplete,
                raw::Reply::error("22012"),
                Ready(b'I'),
                ParseComplete,
                BindComplete,
                Row(vec![Some(round.to_string())]),
                Complete("SELECT 1".into()),
                Ready(b'I'),
            ],
            "round {round}"
        );
    }
}

/// A Close after an error in the same batch is skipped by PostgreSQL, so the statement it names
/// still exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_skipped_after_an_error_leaves_the_statement() {
    let proxy = start("");
    // What PostgreSQL does, straight to the primary; then the same through pgroute.
    for (target, port) in [("PostgreSQL", cluster().port(0)), ("pgroute", proxy.port)] {
        close_skipped_after_an_error(target, port).await;
    }
}

async fn close_skipped_after_an_error(target: &str, port: u16) {
    let mut raw = raw::RawConn::connect(port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    use raw::Reply::*;
    let mut out = BytesMut::new();
    raw::parse(&mut out, "proto_kept", "SELECT 'kept'");
    raw::sync(&mut out);
    assert_eq!(raw.exchange(&out).await, vec![ParseComplete, Ready(b'I')]);
    let mut out = BytesMut::new();
    raw::statement(&mut out, "SELECT 1/0");
    raw::close(&mut out, "proto_kept");
    raw::sync(&mut out);
    assert_eq!(
        raw::codes_only(raw.exchange(&out).await),
        vec![ParseComplete, raw::Reply::error("22012"), Ready(b'I')],
        "{target}: the Close is discarded with the rest of the batch"
    );
    let mut out = BytesMut::new();
    raw::bind_execute(&mut out, "proto_kept");
    raw::sync(&mut out);
    assert_eq!(
        raw.exchange(&out).await,
        vec![
            BindComplete,
            Row(vec![Some("kept".into())]),
            Complete("SELECT 1".into()),
            Ready(b'I')
        ],
        "{target}: the skipped Close must leave proto_kept prepared"
    );
}

/// COPY FROM STDIN through the extended protocol, as libpq and tokio-postgres send it: Bind,
/// Execute, Sync, CopyData…, CopyDone, Sync. PostgreSQL ignores a Sync received in copy-in
/// mode, so the two Syncs get one ReadyForQuery; the next statement must get exactly its own
/// replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copy_in_gets_one_ready_for_query_and_the_next_statement_its_own_replies() {
    on_primary(
        "DROP TABLE IF EXISTS proto_raw_copy;\n\
         CREATE TABLE proto_raw_copy(id int);\n\
         ALTER TABLE proto_raw_copy OWNER TO app;",
    );
    let proxy = start("");
    for (target, port) in [("PostgreSQL", cluster().port(0)), ("pgroute", proxy.port)] {
        use raw::Reply::*;
        let mut raw = raw::RawConn::connect(port, USER, Some(PASSWORD), "postgres")
            .await
            .expect("raw connect");
        let mut out = BytesMut::new();
        raw::statement(&mut out, "COPY proto_raw_copy FROM STDIN");
        raw::sync(&mut out);
        raw.send(&out).await;
        let replies = raw.read_until(|r| *r == CopyIn).await;
        assert_eq!(
            replies,
            vec![ParseComplete, BindComplete, CopyIn],
            "{target}"
        );
        let mut out = BytesMut::new();
        raw::copy_data(&mut out, b"1\n2\n3\n");
        raw::copy_done(&mut out);
        raw::sync(&mut out);
        raw.send(&out).await;
        let replies = raw.read_until(|r| matches!(r, Ready(_))).await;
        assert_eq!(
            replies,
            vec![Complete("COPY 3".into()), Ready(b'I')],
            "{target}"
        );
        for i in 0..3 {
            let mut out = BytesMut::new();
            raw::query(&mut out, &format!("SELECT 'next {i}'"));
            raw.send(&out).await;
            let replies = raw.read_until(|r| matches!(r, Ready(_))).await;
            assert_eq!(
                replies,
                vec![
                    Row(vec![Some(format!("next {i}"))]),
                    Complete("SELECT 1".into()),
                    Ready(b'I')
                ],
                "{target}: the replies to query {i} after an extended-protocol COPY"
            );
        }
    }
    assert_eq!(on_primary("SELECT count(*) FROM proto_raw_copy"), "6");
}

/// After an error in an extended-protocol COPY the server discards everything up to the
/// client's next Sync: until that Sync the connection is the client's, not the pool's. With
/// one primary connection, another client's write waits for it and then runs normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_extended_copy_keeps_its_connection_until_the_clients_sync() {
    use raw::Reply::*;
    on_primary(
        "DROP TABLE IF EXISTS proto_raw_copy_fail;\n\
         CREATE TABLE proto_raw_copy_fail(id int);\n\
         ALTER TABLE proto_raw_copy_fail OWNER TO app;",
    );
    let proxy = start("[pool]\nmax_size = 1\ncheckout_timeout = \"8s\"\n");
    let mut copier = raw::RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    let mut out = BytesMut::new();
    raw::statement(&mut out, "COPY proto_raw_copy_fail FROM STDIN");
    raw::sync(&mut out);
    copier.send(&out).await;
    let replies = copier.read_until(|r| *r == CopyIn).await;
    assert_eq!(replies, vec![ParseComplete, BindComplete, CopyIn]);
    let mut out = BytesMut::new();
    raw::copy_data(&mut out, b"1\nnot-a-number\n");
    copier.send(&out).await;
    let replies = raw::codes_only(copier.read_until(|r| matches!(r, Error { .. })).await);
    assert_eq!(replies, vec![raw::Reply::error("22P02")]);

    // The copier has its error but has not sent its Sync yet: another client's write.
    let other = proxy.connect().await;
    let write = tokio::spawn(async move {
        tokio::time::timeout(
            PATIENCE,
            other.simple_query("INSERT INTO proto_raw_copy_fail VALUES (7)"),
        )
        .await
        .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = BytesMut::new();
    raw::copy_data(&mut out, b"2\n");
    raw::copy_fail(&mut out, "client gives up");
    raw::sync(&mut out);
    copier.send(&out).await;
    let replies = copier.read_until(|r| matches!(r, Ready(_))).await;
    assert_eq!(replies, vec![Ready(b'I')], "the copier's Sync is answered");
    assert_eq!(
        write.await.expect("join"),
        Ok(Ok(())),
        "the other client's write ran once the copier had synced"
    );
    // The copier's session goes on. (Its read may go to a replica that has not replayed the
    // other client's write yet: that write is not the copier's own, so the count is read on
    // the primary.)
    let replies = copier
        .exchange(&{
            let mut out = BytesMut::new();
            raw::query(&mut out, "SELECT 'goes on'");
            out
        })
        .await;
    assert_eq!(raw::rows(&replies), vec![vec![Some("goes on".to_owned())]]);
    assert_eq!(on_primary("SELECT count(*) FROM proto_raw_copy_fail"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_with_row_limits_inside_a_transaction() {
    let proxy = start("");
    let mut client = proxy.connect().await;
    for round in 0..3 {
        let tx = client.transaction().await.expect("BEGIN");
        let stmt = tx
            .prepare("SELECT n, inet_server_port() FROM generate_series(1, $1::int) AS n")
            .await
            .expect("prepare");
        let total = 10 + round;
        let portal = tx.bind(&stmt, &[&total]).await.expect("bind");
        let other = tx
            .bind(&stmt, &[&2i32])
            .await
            .expect("bind a second portal");
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..20 {
            let rows = tx.query_portal(&portal, 3).await.expect("execute portal");
            sizes.push(rows.len());
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                got.push(r.get::<_, i32>(0));
                assert_eq!(r.get::<_, i32>(1), primary_port());
            }
            // Interleaved with the other portal.
            let o = tx.query_portal(&other, 1).await.expect("other portal");
            assert!(o.len() <= 1);
        }
        assert_eq!(got, (1..=total).collect::<Vec<_>>(), "sizes {sizes:?}");
        tx.commit().await.expect("COMMIT");
    }
}

/// Numeric in PostgreSQL's binary format, from a decimal string such as `-123.4500`.
fn numeric_binary(text: &str) -> Vec<u8> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let dscale = frac_part.len() as u16;
    let pad_left = (4 - int_part.len() % 4) % 4;
    let pad_right = (4 - frac_part.len() % 4) % 4;
    let int_padded = format!("{}{int_part}", "0".repeat(pad_left));
    let frac_padded = format!("{frac_part}{}", "0".repeat(pad_right));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
            .collect()
    };
    let mut groups = group(&int_padded);
    let mut weight = groups.len() as i16 - 1;
    groups.extend(group(&frac_padded));
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = BytesMut::new();
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative { 0x4000 } else { 0 });
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
    out.to_vec()
}

/// A value's bytes in binary format, of whatever type the server says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawValue(Vec<u8>);

impl ToSql for RawValue {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawValue(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Typed parameters and results in binary format, through pgroute and back, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_values_round_trip_exactly() {
    let proxy = start("");
    let client = proxy.connect().await;

    let ints = client
        .query_one(
            "SELECT $1::int2, $2::int2, $3::int4, $4::int4, $5::int8, $6::int8, \
             $5::int8::text, inet_server_port()",
            &[
                &i16::MIN,
                &i16::MAX,
                &i32::MIN,
                &i32::MAX,
                &i64::MIN,
                &i64::MAX,
            ],
        )
        .await
        .expect("integers");
    assert_eq!(ints.get::<_, i16>(0), i16::MIN);
    assert_eq!(ints.get::<_, i16>(1), i16::MAX);
    assert_eq!(ints.get::<_, i32>(2), i32::MIN);
    assert_eq!(ints.get::<_, i32>(3), i32::MAX);
    assert_eq!(ints.get::<_, i64>(4), i64::MIN);
    assert_eq!(ints.get::<_, i64>(5), i64::MAX);
    assert_eq!(ints.get::<_, String>(6), i64::MIN.to_string());
    assert!(replica_ports().contains(&ints.get::<_, i32>(7)));

    for text in [
        "-12345678901234567890.0123456789012345678901",
        "98765432109876543210987654321098765432109876543210",
        "0.000000000000000000000000000000000001",
        "3.1400",
        "0",
    ] {
        let bin = numeric_binary(text);
        let row = client
            .query_one(
                &format!("SELECT $1::numeric, $1::numeric::text, '{text}'::numeric"),
                &[&RawValue(bin.clone())],
            )
            .await
            .unwrap_or_else(|e| panic!("numeric {text}: {e}"));
        assert_eq!(row.get::<_, String>(1), text, "numeric parameter");
        assert_eq!(
            row.get::<_, RawValue>(0),
            RawValue(bin.clone()),
            "numeric {text} back"
        );
        assert_eq!(
            row.get::<_, RawValue>(2),
            RawValue(bin),
            "numeric {text} from the server"
        );
    }

    let text = "naïve café ☕ 😀🎉 中文字符 日本語 한국어 \u{10FFFF} 'quote' \"dq\" \\ end";
    let bytes: Vec<u8> = (0..=255u8).collect();
    let ts = SystemTime::UNIX_EPOCH + Duration::from_micros(1_709_210_096_789_012);
    let mut jsonb = vec![1u8];
    jsonb.extend_from_slice(r#"{"a": [1, 2.5, "ü😀"], "b": {"c": null}}"#.as_bytes());
    let int_array: Vec<Option<i32>> = vec![Some(1), None, Some(i32::MIN), Some(i32::MAX)];
    let text_array: Vec<String> = ["", "a", "😀", "with,comma", "\"quoted\"", "NULL"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let none_int: Option<i32> = None;
    let none_text: Option<String> = None;
    let row = client
        .query_one(
            "SELECT $1::text, $2::bytea, $3::timestamptz, $4::jsonb, $5::int4[], $6::text[], \
             $7::int4, $8::text, length($1), md5($2), \
             $3::timestamptz = '2024-02-29 12:34:56.789012+00', $4::jsonb -> 'a' ->> 2",
            &[
                &text,
                &bytes,
                &ts,
                &RawValue(jsonb.clone()),
                &int_array,
                &text_array,
                &none_int,
                &none_text,
            ],
        )
        .await
        .expect("binary round trip");
    assert_eq!(row.get::<_, String>(0), text);
    assert_eq!(row.get::<_, Vec<u8>>(1), bytes);
    assert_eq!(row.get::<_, SystemTime>(2), ts);
    assert_eq!(row.get::<_, RawValue>(3), RawValue(jsonb));
    assert_eq!(row.get::<_, Vec<Option<i32>>>(4), int_array);
    assert_eq!(row.get::<_, Vec<String>>(5), text_array);
    assert_eq!(row.get::<_, Option<i32>>(6), None);
    assert_eq!(row.get::<_, Option<String>>(7), None);
    assert_eq!(row.get::<_, i32>(8), text.chars().count() as i32);
    assert_eq!(row.get::<_, String>(9), "e2c865db4162bed963bfaa9ef6ac18f0");
    assert!(row.get::<_, bool>(10), "timestamptz as the server reads it");
    assert_eq!(row.get::<_, String>(11), "ü😀");

    // The same values through a write on the primary, and read back.
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_bin; CREATE TABLE proto_bin(t text, b bytea, \
             ts timestamptz, ia int4[], ta text[], n int4)",
        )
        .await
        .expect("create");
    client
        .execute(
            "INSERT INTO proto_bin VALUES ($1, $2, $3, $4, $5, $6)",
            &[&text, &bytes, &ts, &int_array, &text_array, &none_int],
        )
        .await
        .expect("insert");
    let row = client
        .query_one("SELECT t, b, ts, ia, ta, n FROM proto_bin", &[])
        .await
        .expect("read back");
    assert_eq!(row.get::<_, String>(0), text);
    assert_eq!(row.get::<_, Vec<u8>>(1), bytes);
    assert_eq!(row.get::<_, SystemTime>(2), ts);
    assert_eq!(row.get::<_, Vec<Option<i32>>>(3), int_array);
    assert_eq!(row.get::<_, Vec<String>>(4), text_array);
    assert_eq!(row.get::<_, Option<i32>>(5), None);
}

// ---------------------------------------------------------------------------------------------
// 7. BEGIN READ ONLY.

async fn read_only_transaction(client: &mut Client) -> (i32, tokio_postgres::Error) {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .expect("BEGIN READ ONLY");
    let port: i32 = tx
        .query_one("SELECT inet_server_port()", &[])
        .await
        .expect("read")
        .get(0);
    let err = tx
        .execute("CREATE TEMP TABLE proto_ro(x int)", &[])
        .await
        .expect_err("a write in a READ ONLY transaction");
    tx.rollback().await.expect("ROLLBACK");
    (port, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_go_to_a_replica_when_configured() {
    let proxy = start("[routing]\nread_only_transactions = \"replica\"\n");
    let client = proxy.connect().await;
    let mut ports = BTreeSet::new();
    for i in 0..6 {
        client
            .simple_query("BEGIN READ ONLY")
            .await
            .expect("BEGIN READ ONLY");
        let port: i32 = simple_value(&client, "SELECT inet_server_port()")
            .await
            .parse()
            .unwrap();
        assert!(replica_ports().contains(&port), "transaction {i} on {port}");
        ports.insert(port);
        let err = client
            .simple_query("CREATE TABLE proto_never(x int)")
            .await
            .expect_err("write inside");
        assert_eq!(
            code_of(&err),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{err}"
        );
        client.simple_query("ROLLBACK").await.expect("ROLLBACK");
    }
    assert_eq!(
        ports,
        replica_ports(),
        "read-only transactions spread over the replicas"
    );
    let mut client = client;
    let (port, err) = read_only_transaction(&mut client).await;
    assert!(replica_ports().contains(&port), "{port}");
    assert_eq!(
        code_of(&err),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err}"
    );
    // A read-write transaction still runs on the primary.
    let tx = client.transaction().await.expect("BEGIN");
    let port: i32 = tx
        .query_one("SELECT inet_server_port()", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(port, primary_port());
    tx.commit().await.expect("COMMIT");
}

/// `BEGIN` then `SET TRANSACTION READ ONLY` (both protocols), and a plain `BEGIN` under
/// `SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`, are read-only transactions too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_transaction_read_only_takes_the_transaction_to_a_replica_when_configured() {
    let proxy = start("[routing]\nread_only_transactions = \"replica\"\n");
    let mut client = proxy.connect().await;
    // Simple protocol, as psql sends it.
    let mut ports = BTreeSet::new();
    for i in 0..6 {
        client.simple_query("BEGIN").await.expect("BEGIN");
        client
            .simple_query("SET TRANSACTION READ ONLY")
            .await
            .expect("SET TRANSACTION READ ONLY");
        let rows = simple_rows(
            &client,
            "SELECT inet_server_port(), current_setting('transaction_read_only')",
        )
        .await;
        let port: i32 = rows[0][0].as_deref().unwrap_or_default().parse().unwrap();
        assert!(replica_ports().contains(&port), "transaction {i} on {port}");
        assert_eq!(rows[0][1].as_deref(), Some("on"));
        ports.insert(port);
        let err = client
            .simple_query("CREATE TABLE proto_never(x int)")
            .await
            .expect_err("write inside");
        assert_eq!(
            code_of(&err),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{err}"
        );
        client.simple_query("ROLLBACK").await.expect("ROLLBACK");
    }
    assert_eq!(ports, replica_ports(), "spread over the replicas");
    // Extended protocol for the SET TRANSACTION.
    let tx = client.transaction().await.expect("BEGIN");
    tx.execute(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        &[],
    )
    .await
    .expect("SET TRANSACTION");
    let row = tx
        .query_one(
            "SELECT inet_server_port(), current_setting('transaction_isolation')",
            &[],
        )
        .await
        .expect("read");
    assert!(replica_ports().contains(&row.get::<_, i32>(0)));
    assert_eq!(row.get::<_, String>(1), "repeatable read");
    tx.commit().await.expect("COMMIT");
    // The session's default.
    client
        .simple_query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await
        .expect("SET SESSION CHARACTERISTICS");
    client.simple_query("BEGIN").await.expect("BEGIN");
    let port: i32 = simple_value(&client, "SELECT inet_server_port()")
        .await
        .parse()
        .unwrap();
    assert!(replica_ports().contains(&port), "{port}");
    client.simple_query("COMMIT").await.expect("COMMIT");
}

/// A `BEGIN` that pgroute answered before choosing a node still opens the transaction on the
/// primary, ahead of its first statement: a rollback undoes the writes, and the snapshot of a
/// repeatable-read transaction starts with that statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_begin_still_opens_the_transaction_on_the_primary() {
    on_primary(
        "DROP TABLE IF EXISTS proto_deferred;\n\
         CREATE TABLE proto_deferred(id int);\n\
         ALTER TABLE proto_deferred OWNER TO app;",
    );
    let proxy = start("[routing]\nread_only_transactions = \"replica\"\n");
    let client = proxy.connect().await;
    let status = |msgs: &[SimpleQueryMessage]| {
        msgs.iter()
            .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
            .count()
    };
    let begin = client.simple_query("BEGIN").await.expect("BEGIN");
    assert_eq!(status(&begin), 1, "BEGIN is answered");
    let rows = simple_rows(&client, "SELECT inet_server_port()").await;
    assert_eq!(
        rows[0][0].as_deref(),
        Some(primary_port().to_string().as_str()),
        "a read-write transaction's reads are the primary's"
    );
    client
        .simple_query("INSERT INTO proto_deferred VALUES (1)")
        .await
        .expect("insert");
    client.simple_query("ROLLBACK").await.expect("ROLLBACK");
    assert_eq!(on_primary("SELECT count(*) FROM proto_deferred"), "0");
    // now() is the transaction's start: it differs from a later statement's timestamp only if
    // the BEGIN really reached the server before the first statement.
    client.simple_query("BEGIN").await.expect("BEGIN");
    client
        .simple_query("SELECT pg_sleep(0.05)")
        .await
        .expect("sleep");
    let rows = simple_rows(&client, "SELECT now() < statement_timestamp()").await;
    assert_eq!(rows[0][0].as_deref(), Some("t"), "one transaction");
    client.simple_query("COMMIT").await.expect("COMMIT");
    // A BEGIN straight followed by COMMIT, and by a failing statement.
    client.simple_query("BEGIN").await.expect("BEGIN");
    client.simple_query("COMMIT").await.expect("COMMIT");
    client.simple_query("BEGIN").await.expect("BEGIN");
    let err = client
        .simple_query("SELECT 1/0")
        .await
        .expect_err("division by zero");
    assert_eq!(code_of(&err), Some(&SqlState::DIVISION_BY_ZERO));
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(code_of(&err), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    client.simple_query("ROLLBACK").await.expect("ROLLBACK");
    assert_eq!(simple_value(&client, "SELECT 2").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_run_on_the_primary_by_default() {
    let proxy = start("");
    let mut client = proxy.connect().await;
    for _ in 0..3 {
        let (port, err) = read_only_transaction(&mut client).await;
        assert_eq!(port, primary_port());
        assert_eq!(
            code_of(&err),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{err}"
        );
    }
    let rows = simple_rows(
        &client,
        "BEGIN READ ONLY; SELECT inet_server_port(); COMMIT",
    )
    .await;
    assert_eq!(
        rows[0][0].as_deref(),
        Some(primary_port().to_string().as_str())
    );
    client.simple_query("BEGIN").await.expect("BEGIN");
    client
        .simple_query("SET TRANSACTION READ ONLY")
        .await
        .expect("SET TRANSACTION READ ONLY");
    assert_eq!(
        simple_value(&client, "SELECT inet_server_port()").await,
        primary_port().to_string()
    );
    client.simple_query("COMMIT").await.expect("COMMIT");
}

// ---------------------------------------------------------------------------------------------
// 8. sqlx: a pool of its own, named statements it caches per connection.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_with_cached_statements_and_a_transaction() {
    use sqlx::postgres::PgPoolOptions;
    use sqlx::Row;
    let proxy = start_replica_reads("");
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(PATIENCE)
        .connect(&proxy.url())
        .await
        .expect("sqlx pool through pgroute");
    let mut ports = BTreeSet::new();
    for i in 0..100i32 {
        let row = sqlx::query("SELECT $1::int + 1, inet_server_port()")
            .bind(i)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("query {i}: {e}"));
        assert_eq!(row.get::<i32, _>(0), i + 1);
        ports.insert(row.get::<i32, _>(1));
    }
    assert_eq!(
        ports,
        replica_ports(),
        "sqlx reads spread over the replicas"
    );

    sqlx::raw_sql(
        "DROP TABLE IF EXISTS proto_sqlx; CREATE TABLE proto_sqlx(id int PRIMARY KEY, note text)",
    )
    .execute(&pool)
    .await
    .expect("create");
    let mut tx = pool.begin().await.expect("BEGIN");
    for id in 1..=3i32 {
        sqlx::query("INSERT INTO proto_sqlx VALUES ($1, $2)")
            .bind(id)
            .bind(format!("row {id} ✓"))
            .execute(&mut *tx)
            .await
            .expect("insert");
    }
    let (count, port): (i64, i32) =
        sqlx::query_as("SELECT count(*), inet_server_port() FROM proto_sqlx")
            .fetch_one(&mut *tx)
            .await
            .expect("read inside the transaction");
    assert_eq!((count, port), (3, primary_port()));
    tx.commit().await.expect("COMMIT");
    let mut tx = pool.begin().await.expect("BEGIN");
    sqlx::query("INSERT INTO proto_sqlx VALUES ($1, $2)")
        .bind(4i32)
        .bind("rolled back")
        .execute(&mut *tx)
        .await
        .expect("insert");
    tx.rollback().await.expect("ROLLBACK");
    assert_eq!(
        on_primary("SELECT count(*), min(note) FROM proto_sqlx"),
        "3|row 1 ✓"
    );
    pool.close().await;
}

// ---------------------------------------------------------------------------------------------
// 9. pgbench.

fn pgbench(port: u16, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
        .args(args)
        .arg("postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run pgbench");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_through_pgroute_in_every_query_mode() {
    let primary = cluster().port(0);
    let (ok, out) = tokio::task::spawn_blocking(move || pgbench(primary, &["-i", "-q", "-s", "1"]))
        .await
        .expect("pgbench -i");
    assert!(ok, "pgbench -i on the primary:\n{out}");
    caught_up();
    let proxy = start("");
    let port = proxy.port;
    for mode in ["simple", "extended", "prepared"] {
        for select_only in [true, false] {
            let mut args = vec!["-n", "-T", "3", "-c", "4", "-j", "2", "-M", mode];
            if select_only {
                args.push("-S");
            }
            let args_owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let (ok, out) = tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args_owned.iter().map(String::as_str).collect();
                pgbench(port, &args)
            })
            .await
            .expect("pgbench");
            let what = format!("pgbench -M {mode}{}", if select_only { " -S" } else { "" });
            assert!(ok, "{what}:\n{out}");
            if let Some(line) = out
                .lines()
                .find(|l| l.starts_with("number of failed transactions"))
            {
                assert!(
                    line.starts_with("number of failed transactions: 0 "),
                    "{what}: {line}\n{out}"
                );
            }
            let processed = out
                .lines()
                .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            assert!(processed > 0, "{what} processed nothing:\n{out}");
        }
    }
}
