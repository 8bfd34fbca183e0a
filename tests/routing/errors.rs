//! Errors and notices from the servers reach the client whole.

use futures::StreamExt;
use tokio_postgres::AsyncMessage;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_pass_through_whole() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let c = proxy.connect().await;
    let own = direct(0).await;
    c.batch_execute(
        "CREATE TABLE rt_errors (id int CONSTRAINT rt_errors_pkey PRIMARY KEY);
         INSERT INTO rt_errors VALUES (1)",
    )
    .await
    .expect("setup");
    caught_up();

    unique_violation_passes_through(&c, &own).await;
    division_by_zero_passes_through(&c, &own).await;
    undefined_table_passes_through(&c, &own).await;
}

/// 23505 through pgroute (extended and simple protocol) is the primary's own error, whole,
/// and the session goes on. `own` is a direct connection to the primary.
async fn unique_violation_passes_through(c: &Client, own: &Client) {
    let insert = "INSERT INTO rt_errors VALUES (1)";
    let via = c.execute(insert, &[]).await.expect_err("duplicate key");
    let via = db_error(&via);
    assert_eq!(via.code(), &SqlState::UNIQUE_VIOLATION);
    assert_eq!(
        via.message(),
        "duplicate key value violates unique constraint \"rt_errors_pkey\""
    );
    assert_eq!(via.detail(), Some("Key (id)=(1) already exists."));
    assert_eq!(
        (via.table(), via.constraint()),
        (Some("rt_errors"), Some("rt_errors_pkey"))
    );
    let theirs = own.execute(insert, &[]).await.expect_err("duplicate key");
    assert_eq!(error_fields(via), error_fields(db_error(&theirs)));
    let via = c
        .simple_query(insert)
        .await
        .expect_err("duplicate key (simple)");
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
    assert!(server_of(c).await.1, "the session should go on after 23505");
}

/// 22012, through pgroute and directly (`own`): the same error, and the session goes on.
async fn division_by_zero_passes_through(c: &Client, own: &Client) {
    let via = c.query("SELECT 1/0", &[]).await.expect_err("1/0");
    let theirs = own.query("SELECT 1/0", &[]).await.expect_err("1/0");
    assert_eq!(db_error(&via).code(), &SqlState::DIVISION_BY_ZERO);
    assert_eq!(db_error(&via).message(), "division by zero");
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
    assert!(server_of(c).await.1, "the session should go on after 22012");
}

/// 42P01 with its position, through pgroute (extended and simple protocol) and directly
/// (`own`): the same error, and the session goes on.
async fn undefined_table_passes_through(c: &Client, own: &Client) {
    let missing = "SELECT * FROM rt_no_such_table";
    let via = c.query(missing, &[]).await.expect_err("undefined table");
    let theirs = own.query(missing, &[]).await.expect_err("undefined table");
    assert_eq!(db_error(&via).code(), &SqlState::UNDEFINED_TABLE);
    assert_eq!(
        db_error(&via).message(),
        "relation \"rt_no_such_table\" does not exist"
    );
    assert_eq!(
        db_error(&via).position(),
        Some(&ErrorPosition::Original(15))
    );
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
    let via = c
        .simple_query(missing)
        .await
        .expect_err("undefined table (simple)");
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
    assert!(server_of(c).await.1, "the session should go on after 42P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_reach_the_client() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let (client, mut connection) = tokio_postgres::connect(&proxy.conn_str(), NoTls)
        .await
        .expect("connect");
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(notice) = message {
                let _ = tx.send(notice);
            }
        }
    });
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
        .await
        .expect("DO");
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a notice within 5 s")
        .expect("the connection is still open");
    assert_eq!(
        (notice.severity(), notice.code(), notice.message()),
        ("NOTICE", &SqlState::SUCCESSFUL_COMPLETION, "hello")
    );
    assert!(server_of(&client).await.1, "the session goes on");

    let (ok, _, stderr) = psql(
        &proxy,
        &["-c", "DO $$ BEGIN RAISE NOTICE 'hello from psql'; END $$"],
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("NOTICE:  hello from psql"),
        "psql stderr: {stderr}"
    );
}
