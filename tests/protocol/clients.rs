//! Real clients with habits of their own: sqlx (a pool of its own, named statements it caches per
//! connection) and pgbench in every query mode.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_with_cached_statements_and_a_transaction() {
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
    sqlx_transactions_commit_and_roll_back_on_the_primary(&pool).await;
    pool.close().await;
}

/// Three rows inserted in a committed transaction and a fourth in a rolled-back one, through the
/// pool: the transactions run on the primary and only the committed rows stay.
async fn sqlx_transactions_commit_and_roll_back_on_the_primary(pool: &PgPool) {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS proto_sqlx; CREATE TABLE proto_sqlx(id int PRIMARY KEY, note text)",
    )
    .execute(pool)
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
}

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
