//! `[limits]`: startup, idle and query timeouts, server connection lifetime, per-user and
//! per-database connection limits, and the longest message a client may send.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

fn limits_config(limits: &str) -> String {
    pgroute::demo::config_toml(
        cluster(),
        "127.0.0.1:0",
        USER,
        PASSWORD,
        &format!("{REPLICA_READS}\n[limits]\n{limits}\n"),
    )
}

/// Reads until the peer closes; how long that took. Panics if it sends anything or stays open
/// for `within`.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Duration {
    let began = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) => began.elapsed(),
        Ok(Ok(n)) => panic!("sent {n} bytes: {:?}", &buf[..n]),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => began.elapsed(),
        Ok(Err(e)) => panic!("read: {e}"),
        Err(_) => panic!("still open after {within:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_log_in_within_startup_timeout_are_closed() {
    let proxy = start_proxy_toml(&limits_config("startup_timeout = \"1s\""));
    let mut silent = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    let mut half = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    // Half of a startup packet's length word and version.
    half.write_all(&[0, 0, 0, 40, 0, 3]).await.expect("write");
    let took = closed_after(&mut silent, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    closed_after(&mut half, Duration::from_secs(2)).await;
    // A client that logs in in time stays, past the timeout.
    let client = proxy.connect().await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        simple_rows(&client, "SELECT 1").await[0][0].as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_with_57p05_and_an_idle_transaction_with_25p03() {
    let proxy = start_proxy_toml(&limits_config(
        "client_idle_timeout = \"1s\"\nidle_in_transaction_timeout = \"1s\"",
    ));
    let mut idle = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("login");
    let mut in_txn = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("login");
    let setup = proxy.connect().await;
    setup
        .batch_execute("CREATE TABLE IF NOT EXISTS limits_idle (id int)")
        .await
        .expect("create table");
    drop(setup);
    in_txn
        .simple_query("BEGIN; INSERT INTO limits_idle VALUES (42)")
        .await
        .expect("insert in a transaction");
    // Busy clients are not idle: statements half a second apart keep a session.
    let busy = proxy.connect().await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        simple_rows(&busy, "SELECT 1").await;
    }
    assert_eq!(idle.until_closed().await, Ok(vec!["57P05".to_owned()]));
    assert_eq!(in_txn.until_closed().await, Ok(vec!["25P03".to_owned()]));
    // Its server connection was closed, so the transaction was rolled back.
    let deadline = Instant::now() + Duration::from_secs(5);
    while on_primary("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND query LIKE '%limits_idle%'") != "0" {
        assert!(Instant::now() < deadline, "the transaction stayed open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        on_primary("SELECT count(*) FROM limits_idle WHERE id = 42"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_cancels_the_statement_on_its_server() {
    let proxy = start_proxy_toml(&limits_config("query_timeout = \"1s\""));
    let client = proxy.connect().await;
    let began = Instant::now();
    let e = client
        .simple_query("SELECT pg_sleep(10)")
        .await
        .expect_err("cancelled");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    // The session goes on; a statement in time is not cancelled.
    assert_eq!(
        simple_rows(&client, "SELECT pg_sleep(0.2)::text").await[0][0].as_deref(),
        Some("")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_older_than_server_lifetime_are_replaced() {
    let proxy = start_proxy_toml(&limits_config("server_lifetime = \"1s\""));
    let client = proxy.connect().await;
    let pid = |rows: Vec<Vec<Option<String>>>| rows[0][0].clone();
    client.batch_execute("BEGIN").await.expect("begin");
    let first = pid(simple_rows(&client, "SELECT pg_backend_pid()").await);
    client.batch_execute("COMMIT").await.expect("commit");
    client.batch_execute("BEGIN").await.expect("begin");
    let again = pid(simple_rows(&client, "SELECT pg_backend_pid()").await);
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(first, again, "a young connection is reused");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client.batch_execute("BEGIN").await.expect("begin");
    let later = pid(simple_rows(&client, "SELECT pg_backend_pid()").await);
    client.batch_execute("COMMIT").await.expect("commit");
    assert_ne!(first, later, "the old connection was recycled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_user_and_per_database_are_limited_with_53300() {
    ensure_role("limits_other", "other-secret");
    let mut toml = limits_config("max_connections_per_user = 2\nmax_connections_per_database = 3");
    toml.push_str("\n[[users]]\nname = \"limits_other\"\npassword = \"other-secret\"\n");
    let proxy = start_proxy_toml(&toml);
    let _a = proxy.connect().await;
    let _b = proxy.connect().await;
    let login = |user: &str, password: &str, db: &str| {
        let (user, password, db) = (user.to_owned(), password.to_owned(), db.to_owned());
        let port = proxy.port;
        async move {
            tokio_postgres::connect(
                &format!("host=127.0.0.1 port={port} user={user} password={password} dbname={db}"),
                NoTls,
            )
            .await
        }
    };
    let e = login(USER, PASSWORD, "postgres")
        .await
        .err()
        .expect("third for app");
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e:?}");
    assert!(
        format!("{e:?}").contains("too many connections for role"),
        "{e:?}"
    );
    let (_c, conn) = login("limits_other", "other-secret", "postgres")
        .await
        .expect("another user");
    tokio::spawn(conn);
    let e = login("limits_other", "other-secret", "postgres")
        .await
        .err()
        .expect("fourth on the database");
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e:?}");
    assert!(format!("{e:?}").contains("for database"), "{e:?}");
    // A place is freed when a session ends.
    drop(_a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match login(USER, PASSWORD, "postgres").await {
            Ok((_client, conn)) => {
                tokio::spawn(conn);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no place freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_message_size_ends_the_session_unread_with_54000() {
    let proxy = start_proxy_toml(&limits_config("max_message_size = \"64KiB\""));
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("login");
    // A message under the limit works.
    let sql = format!("SELECT length('{}')", "x".repeat(60_000));
    assert_eq!(
        raw.simple_query(&sql).await.expect("60 kB query")[0][0].as_deref(),
        Some("60000")
    );
    // Only the header of a 200 MB Query: refused at once, without waiting for its body.
    raw.send(&[b'Q', 0x0B, 0xEB, 0xC2, 0x04]).await;
    assert_eq!(raw.until_closed().await, Ok(vec!["54000".to_owned()]));
    // Before login, a password message is capped as PostgreSQL caps it.
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    let mut startup = BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [("user", USER), ("database", "postgres")],
        &mut startup,
    )
    .expect("startup");
    stream.write_all(&startup).await.expect("write");
    stream
        .write_all(&[b'p', 0x01, 0, 0, 0])
        .await
        .expect("write");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("08P01"), "{text}");
}
