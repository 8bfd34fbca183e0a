//! BEGIN READ ONLY and SET TRANSACTION READ ONLY: on a replica when configured, on the primary by
//! default.

use super::*;

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
        ports.insert(simple_set_transaction_read_only(&client, i).await);
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

/// Transaction `i`: `BEGIN` and `SET TRANSACTION READ ONLY` as simple Queries, then a read that
/// must run on a replica, read-only, and a write that must fail; rolled back. Returns the port.
async fn simple_set_transaction_read_only(client: &Client, i: usize) -> i32 {
    client.simple_query("BEGIN").await.expect("BEGIN");
    client
        .simple_query("SET TRANSACTION READ ONLY")
        .await
        .expect("SET TRANSACTION READ ONLY");
    let rows = simple_rows(
        client,
        "SELECT inet_server_port(), current_setting('transaction_read_only')",
    )
    .await;
    let port: i32 = rows[0][0].as_deref().unwrap_or_default().parse().unwrap();
    assert!(replica_ports().contains(&port), "transaction {i} on {port}");
    assert_eq!(rows[0][1].as_deref(), Some("on"));
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
    port
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
