//! psql: multi-statement commands and scripts.

use super::*;

/// A script whose transaction fails, then goes on after its ROLLBACK.
const FAILING_SCRIPT: &str = "BEGIN;
INSERT INTO rt_psql_script VALUES (3, 'd');
SELECT 1/0;
SELECT 'not run';
ROLLBACK;
SELECT count(*) FROM rt_psql_script WHERE id = 3;
";

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

    let p = primary_port();
    let (ok, out, err) = psql_script(
        &proxy,
        &["-v", "ON_ERROR_STOP=1"],
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
    assert!(ok, "{err}");
    assert_eq!(out, "2|t\ncommitted");
    caught_up();

    let (ok, out, err) = psql_script(
        &proxy,
        &["-v", "ON_ERROR_STOP=1"],
        "rt_psql_reads",
        "SELECT string_agg(v, ',' ORDER BY id) FROM rt_psql_script;\nSELECT pg_is_in_recovery();\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "a,c\nt");

    // A script whose transaction fails goes on after its ROLLBACK.
    let (ok, out, err) = psql_script(&proxy, &[], "rt_psql_failing", FAILING_SCRIPT);
    assert!(ok, "{err}");
    assert_eq!(out, "0");
    assert!(err.contains("division by zero"), "{err}");
    assert!(err.contains("current transaction is aborted"), "{err}");
    assert_eq!(
        on_primary("SELECT count(*) FROM rt_psql_script WHERE id = 3"),
        "0"
    );
}

/// Runs psql with `args` on a script file holding `body` (named after `name`, removed after).
fn psql_script(proxy: &TestProxy, args: &[&str], name: &str, body: &str) -> (bool, String, String) {
    let path = std::env::temp_dir().join(format!("{name}-{}.sql", std::process::id()));
    std::fs::write(&path, body).expect("write script");
    let file = path.to_str().expect("a UTF-8 temp path").to_owned();
    let result = psql(proxy, &[args, &["-f", &file]].concat());
    let _ = std::fs::remove_file(&path);
    result
}
