//! psql: multi-statement commands and scripts.

use super::*;

#[test]
fn psql_runs_multi_statement_commands_and_scripts() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let (ok, out, err) = psql(&proxy, &["-c", "SELECT 1; SELECT 2"]);
    assert!(ok, "{err}");
    assert_eq!(out, "1\n2");
    let (ok, out, err) = psql(
        &proxy,
        &["-c", "SELECT 1 AS a, 'x' AS b; SELECT pg_is_in_recovery()"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "1|x\nt");

    let dir = std::env::temp_dir();
    let script = |name: &str, body: &str| {
        let path = dir.join(format!("{name}-{}.sql", std::process::id()));
        std::fs::write(&path, body).expect("write script");
        path
    };
    let p = primary_port();
    let writes = script(
        "rt_psql_writes",
        &format!(
            "CREATE TABLE rt_psql_script (id int PRIMARY KEY, v text);
BEGIN;
INSERT INTO rt_psql_script VALUES (1, 'a'), (2, 'b');
SELECT count(*), inet_server_port() = {p} FROM rt_psql_script;
UPDATE rt_psql_script SET v = 'c' WHERE id = 2;
COMMIT;
SELECT 'committed';
"
        ),
    );
    let (ok, out, err) = psql(
        &proxy,
        &["-v", "ON_ERROR_STOP=1", "-f", writes.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "2|t\ncommitted");
    caught_up();

    let reads = script(
        "rt_psql_reads",
        "SELECT string_agg(v, ',' ORDER BY id) FROM rt_psql_script;\nSELECT pg_is_in_recovery();\n",
    );
    let (ok, out, err) = psql(
        &proxy,
        &["-v", "ON_ERROR_STOP=1", "-f", reads.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "a,c\nt");

    // A script whose transaction fails goes on after its ROLLBACK.
    let failing = script(
        "rt_psql_failing",
        "BEGIN;
INSERT INTO rt_psql_script VALUES (3, 'd');
SELECT 1/0;
SELECT 'not run';
ROLLBACK;
SELECT count(*) FROM rt_psql_script WHERE id = 3;
",
    );
    let (ok, out, err) = psql(&proxy, &["-f", failing.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out, "0");
    assert!(err.contains("division by zero"), "{err}");
    assert!(err.contains("current transaction is aborted"), "{err}");
    assert_eq!(
        on_primary("SELECT count(*) FROM rt_psql_script WHERE id = 3"),
        "0"
    );

    for path in [writes, reads, failing] {
        let _ = std::fs::remove_file(path);
    }
}
