//! Logging in through pgroute: the ParameterStatus a client gets and the parameters it sees
//! afterwards are its own (not pgroute's, not another client's), names of any text get
//! answers, and a login needs no free server connection.

mod common;

use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::{cluster, connect, primary_port, simple_rows, start_proxy, PASSWORD, USER};

fn text(rows: &[&str]) -> Vec<Vec<Option<String>>> {
    rows.iter().map(|r| vec![Some((*r).to_owned())]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_multi_byte_characters_get_answers_as_from_postgresql() {
    let proxy = start_proxy(cluster(), "");
    // "pgroute" is 7 bytes: the É straddles byte 8, where pgroute tells its own names apart.
    let startup = [("pgrouteÉ.x", "1")];
    for (via, port) in [("primary", cluster().port(0)), ("pgroute", proxy.port)] {
        let mut conn = RawConn::connect_with(port, USER, Some(PASSWORD), "postgres", &startup)
            .await
            .unwrap_or_else(|e| panic!("{via}: login: {e}"));
        for sql in ["SHOW \"pgrouteÉ.x\"", "SHOW pgrouteÉ.x"] {
            let rows = conn.simple_query(sql).await;
            assert_eq!(rows, Ok(text(&["1"])), "{via}: {sql}");
        }
        let err = conn.simple_query("SHOW pgrouteé").await;
        assert!(
            err.as_ref().is_err_and(|e| e.starts_with("42704")),
            "{via}: {err:?}"
        );
        let set = conn.simple_query("SET pgrouteé.y = 'z'").await;
        assert_eq!(set, Ok(vec![]), "{via}");
        let rows = conn.simple_query("SHOW pgrouteé.y").await;
        assert_eq!(rows, Ok(text(&["z"])), "{via}");
        let hinted = "/* pgroute.min_lsn=é/ü pgrouteé=1 */ SELECT 1";
        assert_eq!(conn.simple_query(hinted).await, Ok(text(&["1"])), "{via}");
        assert_eq!(
            conn.simple_query("SELECT 2").await,
            Ok(text(&["2"])),
            "{via}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_their_own_application_name_on_shared_connections() {
    // One server connection per node: every client below uses the same ones in turn.
    let proxy = start_proxy(cluster(), "[pool]\nmax_size = 1\n");
    let direct = RawConn::connect(cluster().port(0), USER, Some(PASSWORD), "postgres")
        .await
        .expect("login on the primary");
    assert_eq!(direct.parameter("application_name").as_deref(), Some(""));
    let mut unnamed = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("login");
    let mut alpha = RawConn::connect_with(
        proxy.port,
        USER,
        Some(PASSWORD),
        "postgres",
        &[("application_name", "alpha")],
    )
    .await
    .expect("login");
    assert_eq!(unnamed.parameter("application_name").as_deref(), Some(""));
    assert_eq!(
        alpha.parameter("application_name").as_deref(),
        Some("alpha")
    );
    for round in 0..3 {
        for (conn, want) in [(&mut unnamed, ""), (&mut alpha, "alpha")] {
            let shown = conn.simple_query("SHOW application_name").await;
            assert_eq!(shown, Ok(text(&[want])), "round {round}");
            // A transaction runs on the primary's one connection.
            let sql = "BEGIN; SELECT current_setting('application_name'); COMMIT";
            let current = conn.simple_query(sql).await;
            assert_eq!(current, Ok(text(&[want])), "round {round}");
        }
    }
    let gamma = connect(&format!("{} application_name=gamma", proxy.conn_str())).await;
    let plain = proxy.connect().await;
    for _ in 0..2 {
        let sql = "SELECT current_setting('application_name')";
        assert_eq!(simple_rows(&gamma, sql).await, text(&["gamma"]));
        assert_eq!(simple_rows(&plain, sql).await, text(&[""]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_needs_no_free_server_connection() {
    let proxy = start_proxy(
        cluster(),
        "[pool]\nmax_size = 1\ncheckout_timeout = \"10s\"\n",
    );
    let holder = proxy.connect().await;
    // The primary's only connection, held by an open transaction.
    holder.simple_query("BEGIN; SELECT 1").await.expect("begin");
    let started = Instant::now();
    let second = proxy.connect().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "login took {took:?}");
    let queued = tokio::spawn(async move {
        simple_rows(&second, "BEGIN; SELECT inet_server_port(); COMMIT").await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !queued.is_finished(),
        "served while the connection was held"
    );
    holder.simple_query("COMMIT").await.expect("commit");
    let rows = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("served once the first client committed")
        .expect("task");
    assert_eq!(rows, text(&[&primary_port().to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_to_a_missing_database_gets_the_servers_refusal_every_time() {
    let proxy = start_proxy(cluster(), "");
    for attempt in 0..2 {
        let login = RawConn::connect(proxy.port, USER, Some(PASSWORD), "no_such_db").await;
        let err = login
            .err()
            .unwrap_or_else(|| panic!("attempt {attempt}: logged in"));
        assert!(err.starts_with("3D000"), "attempt {attempt}: {err}");
    }
}
