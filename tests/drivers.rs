//! Real client drivers against pgroute: Python psycopg 3 and asyncpg, Node.js `pg`, and JDBC.
//!
//! Each test starts its own pgroute in front of the shared cluster, creates the tables its
//! script uses (as the superuser, on the primary), and runs the script in `tests/drivers/` with
//! the connection in `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE`, plus `PRIMARY_PORT`
//! and `REPLICA_PORTS` so the script can check where each statement ran (`inet_server_port()`).
//! A script prints one line per check and ends with `N passed, M failed`; it exits non-zero on
//! any failure.
//!
//! A driver runtime that is not installed (Python module, node + `pg`, javac/java + the
//! PostgreSQL JDBC jar) fails the test when `CI` is set — `.ci/run` installs them — and skips
//! it with a notice on stderr otherwise.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cluster, start_proxy, TestProxy, PASSWORD, USER};

/// Replicas stay eligible for reads however busy the shared cluster is, and the monitor is
/// patient with slow probes on a busy machine (as in tests/routing/main.rs); read-your-writes
/// stays at its default (`lsn`), which the scripts check.
const CONFIG: &str = "[lag]\ncheck_interval = \"500ms\"\nmax_bytes = \"1GB\"\nmax_time = \"1h\"\n";

/// How long a fresh pgroute may take to see the replicas (its monitor's first probes).
const REPLICAS_SEEN: Duration = Duration::from_secs(20);

/// How long one script may run (each takes a few seconds).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long DDL may take to reach the replicas.
const CATCH_UP: Duration = Duration::from_secs(20);

/// The PostgreSQL JDBC driver, as Debian's `libpostgresql-jdbc-java` installs it.
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Loads `pg` from `tests/drivers/node`; says why on one line when it cannot.
const NODE_REQUIRE_PG: &str =
    "try { require('pg') } catch (e) { console.error(e.message.split('\\n')[0]); process.exit(1) }";

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Decides what to do when a driver runtime is missing: fail in CI, skip (with a notice that
/// the test harness does not capture) elsewhere. Returns whether the test should go on.
fn runtime_available(driver: &str, missing: Result<(), String>) -> bool {
    let Err(why) = missing else {
        return true;
    };
    if in_ci() {
        panic!(
            "{driver}: driver runtime not installed: {why}\n\
             CI is set, so this is a failure: .ci/run must install it"
        );
    }
    // Written straight to stderr so that it shows without --nocapture.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED drivers::{driver}: driver runtime not installed: {why} \
         (set CI=1 to make this a failure; .ci/run installs it)"
    );
    false
}

/// Runs `program args` (in `dir`) and reports why it could not be run or failed.
fn probe(program: &str, args: &[&str], dir: Option<&Path>) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    match cmd.output() {
        Err(e) => Err(format!("cannot run `{program}`: {e}")),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The last line says why (for Python: "ModuleNotFoundError: No module named …").
            let why = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!(
                "`{program} {}` failed ({}): {}",
                args.join(" "),
                out.status,
                why.trim()
            ))
        }
        Ok(_) => Ok(()),
    }
}

/// Runs `sql` on the primary as the superuser, then waits until the replicas have it.
fn setup(sql: &str) {
    cluster()
        .psql(0, sql)
        .unwrap_or_else(|e| panic!("setup on the primary: {e}\n{sql}"));
    cluster()
        .wait_replicas_caught_up(CATCH_UP)
        .expect("replicas caught up after setup");
}

/// `DROP` + `CREATE` + `GRANT` for each `(name, columns)`.
fn tables_sql(tables: &[(&str, &str)]) -> String {
    tables
        .iter()
        .map(|(name, columns)| {
            format!(
                "DROP TABLE IF EXISTS {name};\n\
                 CREATE TABLE {name} ({columns});\n\
                 GRANT ALL ON {name} TO {USER};\n"
            )
        })
        .collect()
}

/// Starts pgroute for a script and waits until it sends reads to the replicas: until its
/// monitor has probed them, every read goes to the primary.
fn proxy_for_script() -> TestProxy {
    let proxy = start_proxy(cluster(), CONFIG);
    let replicas: Vec<String> = (1..cluster().node_ports().len())
        .map(|n| cluster().port(n).to_string())
        .collect();
    let began = Instant::now();
    loop {
        let (ok, port, err) = common::psql(&proxy, &["-c", "SELECT inet_server_port()"]);
        if ok && replicas.contains(&port) {
            return proxy;
        }
        assert!(
            began.elapsed() < REPLICAS_SEEN,
            "pgroute sent no read to a replica within {REPLICAS_SEEN:?}: last read ran on {port:?} {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The environment every script gets.
fn script_env(cmd: &mut Command, proxy: &TestProxy) {
    let cluster = cluster();
    // Nothing from the caller's libpq environment may change where the script connects.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
    let replicas: Vec<String> = (1..cluster.node_ports().len())
        .map(|n| cluster.port(n).to_string())
        .collect();
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", proxy.port.to_string())
        .env("PGUSER", USER)
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", "postgres")
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PRIMARY_PORT", cluster.primary_port().to_string())
        .env("REPLICA_PORTS", replicas.join(","));
}

/// Runs the script and asserts that it exited 0 and that its last line is `N passed, 0 failed`
/// with N > 0; on failure the whole output is in the panic message.
fn run_script(driver: &str, mut cmd: Command) {
    let began = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{driver}: cannot start {cmd:?}: {e}"));
    // Drain both pipes on their own threads so that a chatty script cannot block.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if began.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let elapsed = began.elapsed();
    let report = format!(
        "{driver}: {cmd:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- ({elapsed:.1?})"
    );
    let Some(status) = status else {
        panic!("{driver}: the script did not finish within {SCRIPT_TIMEOUT:?}\n{report}");
    };
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let counts = parse_summary(last);
    assert!(
        status.success(),
        "{driver}: the script exited with {status}\n{report}"
    );
    match counts {
        Some((passed, 0)) if passed > 0 => {
            println!("{report}");
        }
        _ => panic!(
            "{driver}: the last line is {last:?}, not `N passed, 0 failed` with N > 0\n{report}"
        ),
    }
}

/// Parses `N passed, M failed`.
fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let (passed, failed) = line.trim().split_once(", ")?;
    let passed = passed.strip_suffix(" passed")?.parse().ok()?;
    let failed = failed.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

#[test]
fn summary_lines_are_parsed() {
    assert_eq!(parse_summary("42 passed, 0 failed"), Some((42, 0)));
    assert_eq!(parse_summary("3 passed, 2 failed\n"), Some((3, 2)));
    assert_eq!(parse_summary("passed, 0 failed"), None);
    assert_eq!(parse_summary("FAIL: 3 passed"), None);
}

fn python_script(driver: &str, module: &str, script: &str, tables: &[(&str, &str)]) {
    if !runtime_available(
        driver,
        probe("python3", &["-c", &format!("import {module}")], None),
    ) {
        return;
    }
    setup(&tables_sql(tables));
    let proxy = proxy_for_script();
    let mut cmd = Command::new("python3");
    cmd.arg(drivers_dir().join(script));
    script_env(&mut cmd, &proxy);
    run_script(driver, cmd);
}

#[test]
fn python_psycopg3() {
    python_script(
        "python_psycopg3",
        "psycopg",
        "psycopg3_test.py",
        &[
            ("drv_py3_items", "id int PRIMARY KEY, v text"),
            (
                "drv_py3_copy",
                "id int PRIMARY KEY, v text, b bytea, n numeric",
            ),
        ],
    );
}

#[test]
fn python_asyncpg() {
    python_script(
        "python_asyncpg",
        "asyncpg",
        "asyncpg_test.py",
        &[
            ("drv_apg_items", "id int PRIMARY KEY, v text"),
            (
                "drv_apg_copy",
                "id int PRIMARY KEY, v text, b bytea, n numeric",
            ),
        ],
    );
}

#[test]
fn node_pg() {
    let dir = drivers_dir().join("node");
    let missing = probe("node", &["--version"], None).and_then(|()| {
        probe("node", &["-e", NODE_REQUIRE_PG], Some(&dir))
            .map_err(|e| format!("{e}\n(npm install in {} installs it)", dir.display()))
    });
    if !runtime_available("node_pg", missing) {
        return;
    }
    setup(&tables_sql(&[(
        "drv_node_items",
        "id int PRIMARY KEY, v text",
    )]));
    let proxy = proxy_for_script();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("pg_test.js")).current_dir(&dir);
    script_env(&mut cmd, &proxy);
    run_script("node_pg", cmd);
}

#[test]
fn jdbc() {
    let missing = probe("javac", &["-version"], None)
        .and_then(|()| probe("java", &["-version"], None))
        .and_then(|()| {
            if Path::new(JDBC_JAR).is_file() {
                Ok(())
            } else {
                Err(format!(
                    "no {JDBC_JAR} (Debian package libpostgresql-jdbc-java)"
                ))
            }
        });
    if !runtime_available("jdbc", missing) {
        return;
    }
    let classes = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jdbc-driver-test");
    let _ = std::fs::remove_dir_all(&classes);
    std::fs::create_dir_all(&classes).expect("class directory");
    let source = drivers_dir().join("jdbc/JdbcDriverTest.java");
    let out = Command::new("javac")
        .args(["-encoding", "UTF-8", "-cp", JDBC_JAR, "-d"])
        .arg(&classes)
        .arg(&source)
        .output()
        .expect("run javac");
    assert!(
        out.status.success(),
        "javac {}: {}\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    setup(&tables_sql(&[(
        "drv_jdbc_items",
        "id int PRIMARY KEY, v text",
    )]));
    let proxy = proxy_for_script();
    let mut cmd = Command::new("java");
    cmd.arg("-Dfile.encoding=UTF-8")
        .arg("-cp")
        .arg(format!("{JDBC_JAR}:{}", classes.display()))
        .arg("JdbcDriverTest");
    script_env(&mut cmd, &proxy);
    run_script("jdbc", cmd);
}
