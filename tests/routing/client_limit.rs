//! The client connection limit, and a slow probe that must not refuse writes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_max_client_conn_gets_53300() {
    let toml = format!(
        "max_client_conn = 1\n{}",
        pgroute::demo::config_toml(cluster(), "127.0.0.1:0", USER, PASSWORD, PATIENT_MONITOR)
    );
    let proxy = common::start_proxy_toml(&toml);
    let conn = conn_str(proxy.port, USER, Some(PASSWORD), "postgres");
    let first = common::connect(&conn).await;
    first
        .simple_query("SELECT 1")
        .await
        .expect("the first client works");
    // Several times: the refusal must arrive whole, not as a reset connection.
    for attempt in 0..10 {
        let e = connect_error(&conn).await;
        let Some(db) = e.as_db_error() else {
            panic!("attempt {attempt}: expected SQLSTATE 53300, got: {e:?}");
        };
        assert_eq!(
            db.code(),
            &SqlState::TOO_MANY_CONNECTIONS,
            "attempt {attempt}"
        );
        assert_eq!(db.message(), "sorry, too many clients already");
    }
    first
        .simple_query("SELECT 1")
        .await
        .expect("the first client is unaffected");

    // The slot is freed when the first client leaves.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio_postgres::connect(&conn, NoTls).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "5 s after the first client left, a new one still gets: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// libpq (psql) asks for SSL first by default (`sslmode=prefer`) and, since CVE-2024-10977, shows
/// no error the server sends before that negotiation is over: PostgreSQL answers the SSLRequest
/// ("N") and reads the StartupMessage before it says "too many clients".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_over_max_client_conn_sees_too_many_clients() {
    let toml = format!(
        "max_client_conn = 1\n{}",
        pgroute::demo::config_toml(cluster(), "127.0.0.1:0", USER, PASSWORD, PATIENT_MONITOR)
    );
    let proxy = common::start_proxy_toml(&toml);
    let first = common::connect(&conn_str(proxy.port, USER, Some(PASSWORD), "postgres")).await;
    first
        .simple_query("SELECT 1")
        .await
        .expect("the first client works");
    let url = format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres",
        proxy.port
    );
    let (ok, _, stderr) = psql_url(&url, &["-c", "SELECT 1"]);
    assert!(!ok, "psql should be refused");
    assert!(
        stderr.contains("sorry, too many clients already"),
        "psql: {stderr}"
    );
}

/// Role `rt_probe`, for the monitor to log in as; its search_path finds a pg_is_in_recovery()
/// that, on the primary, sleeps once for the seconds set in `rt_probe.stall`.
fn install_a_probe_that_sleeps_when_told() {
    // The monitor logs in as its own role, whose search_path finds this pg_is_in_recovery()
    // before pg_catalog's: on the primary, it sleeps once when told to.
    ensure_role("rt_probe", "probe-pw");
    on_primary(
        "CREATE SCHEMA rt_probe;
         CREATE TABLE rt_probe.stall (seconds float8 NOT NULL);
         INSERT INTO rt_probe.stall VALUES (0);
         CREATE FUNCTION rt_probe.pg_is_in_recovery() RETURNS boolean
             LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
             DECLARE pause float8;
             BEGIN
                 IF pg_is_in_recovery() THEN RETURN true; END IF;
                 WITH old AS (SELECT seconds FROM rt_probe.stall)
                 UPDATE rt_probe.stall SET seconds = 0 FROM old WHERE old.seconds > 0
                 RETURNING old.seconds INTO pause;
                 IF pause > 0 THEN PERFORM pg_sleep(pause); END IF;
                 RETURN false;
             END $$;
         GRANT USAGE ON SCHEMA rt_probe TO rt_probe;
         ALTER ROLE rt_probe SET search_path = rt_probe, pg_catalog;",
    );
}

/// The monitor marks a node down when one probe takes longer than ten check intervals (at
/// least 1 s). A primary that answers one probe late but serves sessions fine must not have
/// its writes refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_probe_does_not_refuse_writes() {
    install_a_probe_that_sleeps_when_told();
    caught_up();
    let proxy = start_proxy(
        cluster(),
        "[monitor]\nuser = \"rt_probe\"\npassword = \"probe-pw\"\n",
    );
    let c = proxy.connect().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = c
        .batch_execute("CREATE TABLE IF NOT EXISTS rt_probe_writes (id int)")
        .await
    {
        assert!(Instant::now() < deadline, "no write works at all: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One probe of the primary takes 1.5 s; the sessions' own connections are unaffected.
    on_primary("UPDATE rt_probe.stall SET seconds = 1.5");
    let mut refused = Vec::new();
    let started = Instant::now();
    let mut id = 0;
    while started.elapsed() < Duration::from_secs(3) {
        id += 1;
        if let Err(e) = c
            .execute("INSERT INTO rt_probe_writes VALUES ($1)", &[&id])
            .await
        {
            let why = e.as_db_error().map_or(e.to_string(), |d| {
                format!("{} {}", d.code().code(), d.message())
            });
            refused.push(format!("{:?}: {why}", started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        on_primary("SELECT seconds FROM rt_probe.stall"),
        "0",
        "the monitor should have run into the slow probe"
    );
    assert!(
        refused.is_empty(),
        "{} of {id} writes refused while the primary served: {refused:?}",
        refused.len()
    );
}
