//! Session state across pooled connections: the startup parameters, SET, RESET, DISCARD and SET
//! LOCAL follow a client from one server connection to the next, and a rolled-back SET does not
//! stick.

use super::*;

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
