//! Authentication: wrong passwords and unknown users are refused; md5 and trust users log in; an
//! unknown database gets the server's 3D000.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_refused() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let e = connect_error(&conn_str(proxy.port, USER, Some("wrong"), "postgres")).await;
    assert_eq!(db_error(&e).code(), &SqlState::INVALID_PASSWORD, "{e}");
    assert_eq!(
        db_error(&e).message(),
        "password authentication failed for user \"app\""
    );

    let e = connect_error(&conn_str(proxy.port, "rt_nobody", Some("x"), "postgres")).await;
    assert_eq!(
        db_error(&e).code(),
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        "{e}"
    );

    let url = format!("postgres://{USER}:wrong@127.0.0.1:{}/postgres", proxy.port);
    let (ok, _, stderr) = psql_url(&url, &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(
        stderr.contains("password authentication failed for user \"app\""),
        "{stderr}"
    );

    // Refusals leave pgroute serving.
    let c = proxy.connect().await;
    assert!(replica_ports().contains(&server_of(&c).await.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_user_logs_in() {
    ensure_role("rt_md5user", "md5-pw");
    let proxy = start_proxy(
        cluster(),
        &format!("{REPLICA_READS}[[users]]\nname = \"rt_md5user\"\npassword = \"md5-pw\"\nauth = \"md5\"\n"),
    );
    let c = common::connect(&conn_str(
        proxy.port,
        "rt_md5user",
        Some("md5-pw"),
        "postgres",
    ))
    .await;
    let row = c
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "rt_md5user");
    let (port, in_recovery) = server_of(&c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "read ran on {port}"
    );

    let e = connect_error(&conn_str(
        proxy.port,
        "rt_md5user",
        Some("wrong"),
        "postgres",
    ))
    .await;
    assert_eq!(db_error(&e).code(), &SqlState::INVALID_PASSWORD, "{e}");

    let url = format!(
        "postgres://rt_md5user:md5-pw@127.0.0.1:{}/postgres",
        proxy.port
    );
    let (ok, out, stderr) = psql_url(&url, &["-c", "SELECT current_user"]);
    assert!(ok, "psql as the md5 user: {stderr}");
    assert_eq!(out, "rt_md5user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_user_logs_in_without_a_password() {
    ensure_role("rt_trustuser", "trust-server-pw");
    let proxy = start_proxy(
        cluster(),
        &format!("{REPLICA_READS}[[users]]\nname = \"rt_trustuser\"\npassword = \"trust-server-pw\"\nauth = \"trust\"\n"),
    );
    let c = common::connect(&conn_str(proxy.port, "rt_trustuser", None, "postgres")).await;
    let row = c
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "rt_trustuser");
    let (port, in_recovery) = server_of(&c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "read ran on {port}"
    );

    let url = format!("postgres://rt_trustuser@127.0.0.1:{}/postgres", proxy.port);
    let (ok, out, stderr) = psql_url(&url, &["-c", "SELECT current_user"]);
    assert!(ok, "psql as the trust user: {stderr}");
    assert_eq!(out, "rt_trustuser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_gets_the_servers_3d000() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let via = connect_error(&conn_str(proxy.port, USER, Some(PASSWORD), "rt_no_such_db")).await;
    let direct_str = format!(
        "host=127.0.0.1 port={} user=postgres dbname=rt_no_such_db",
        cluster().port(0)
    );
    let theirs = connect_error(&direct_str).await;
    assert_eq!(
        db_error(&via).code(),
        &SqlState::INVALID_CATALOG_NAME,
        "{via}"
    );
    assert_eq!(
        db_error(&via).message(),
        "database \"rt_no_such_db\" does not exist"
    );
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
}
