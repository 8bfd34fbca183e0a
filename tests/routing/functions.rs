//! Functions called from a SELECT: a VOLATILE one (it may write) sends the read to the primary,
//! a STABLE one leaves it on a replica, as the primary's `pg_proc` says; the config's lists
//! override the catalog, function DDL through pgroute refreshes it, and `functions = "builtin"`
//! turns it off.

use super::*;

/// Reads may use replicas whatever the session wrote, so that where a call lands shows what
/// pgroute decided about its function.
fn functions_config(routing: &str) -> String {
    format!("{REPLICA_READS}\n[routing]\n{routing}\n")
}

/// Creates, as the superuser on the primary, a table `{name}_log` the app may write and the
/// functions in `ddl`; waits until the replicas have them.
fn create_functions(name: &str, ddl: &str) {
    on_primary(&format!(
        "CREATE TABLE IF NOT EXISTS {name}_log (port int, at timestamptz DEFAULT now());\n\
         GRANT ALL ON {name}_log TO {USER};\n{ddl}"
    ));
    caught_up();
}

/// `SELECT {call}, inet_server_port(), pg_is_in_recovery()` through the simple protocol: the
/// call's value and where it ran, or the server's error.
async fn call_simple(client: &Client, call: &str) -> Result<(String, (i32, bool)), DbError> {
    let sql = format!("SELECT ({call})::text, inet_server_port(), pg_is_in_recovery()");
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| db_error(&e).clone())?;
    let row = messages
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"));
    let value = row.get(0).unwrap_or_default().to_owned();
    let port = row.get(1).and_then(|p| p.parse().ok()).expect("port");
    Ok((value, (port, row.get(2) == Some("t"))))
}

/// The same through the extended protocol (Parse/Bind/Execute of the unnamed statement).
async fn call_extended(client: &Client, call: &str) -> Result<(String, (i32, bool)), DbError> {
    let sql = format!("SELECT ({call})::text, inet_server_port(), pg_is_in_recovery()");
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| db_error(&e).clone())?;
    Ok((row.get(0), (row.get(1), row.get(2))))
}

#[track_caller]
fn assert_on_primary(what: &str, result: Result<(String, (i32, bool)), DbError>) {
    match result {
        Ok((_, ran_on)) => assert_eq!(
            ran_on,
            (primary_port(), false),
            "{what} should run on the primary"
        ),
        Err(e) => panic!(
            "{what} failed (sent to a replica?): {} {}",
            e.code().code(),
            e.message()
        ),
    }
}

#[track_caller]
fn assert_on_replica(what: &str, result: Result<(String, (i32, bool)), DbError>) {
    match result {
        Ok((_, (port, in_recovery))) => assert!(
            replica_ports().contains(&port) && in_recovery,
            "{what} should run on a replica, ran on {port} (in recovery: {in_recovery})"
        ),
        Err(e) => panic!("{what} failed: {} {}", e.code().code(), e.message()),
    }
}

/// How many rows the functions of `name` wrote, on the primary.
fn logged(name: &str) -> String {
    on_primary(&format!("SELECT count(*) FROM {name}_log"))
}

/// Reads are spread over the replicas; a few calls show that a call is not on a replica by
/// chance.
const CALLS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_function_that_writes_called_from_select_runs_on_the_primary() {
    create_functions(
        "fn_sql",
        "CREATE OR REPLACE FUNCTION fn_sql_write() RETURNS int LANGUAGE sql VOLATILE AS \
         $$ INSERT INTO fn_sql_log (port) VALUES (inet_server_port()) RETURNING port $$;",
    );
    let proxy = start_proxy(cluster(), &functions_config(""));
    let client = proxy.connect().await;
    for _ in 0..CALLS {
        assert_on_primary(
            "simple SELECT fn_sql_write()",
            call_simple(&client, "fn_sql_write()").await,
        );
        assert_on_primary(
            "extended SELECT fn_sql_write()",
            call_extended(&client, "fn_sql_write()").await,
        );
    }
    // A named prepared statement, executed again and again.
    let stmt = client
        .prepare("SELECT fn_sql_write(), inet_server_port(), pg_is_in_recovery()")
        .await
        .expect("prepare");
    for _ in 0..CALLS {
        let row = client
            .query_one(&stmt, &[])
            .await
            .expect("execute the prepared call");
        assert_eq!(
            (row.get::<_, i32>(1), row.get::<_, bool>(2)),
            (primary_port(), false)
        );
    }
    assert_eq!(logged("fn_sql"), (3 * CALLS).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plpgsql_function_that_writes_called_from_select_runs_on_the_primary() {
    create_functions(
        "fn_plpgsql",
        "CREATE OR REPLACE FUNCTION fn_plpgsql_write(n int) RETURNS int LANGUAGE plpgsql AS $$ \
         BEGIN INSERT INTO fn_plpgsql_log (port) \
         SELECT inet_server_port() FROM generate_series(1, n); RETURN n; END $$;",
    );
    let proxy = start_proxy(cluster(), &functions_config(""));
    let client = proxy.connect().await;
    for _ in 0..CALLS {
        // Nested, in a sub-select and schema-qualified: wherever the call is written.
        assert_on_primary(
            "SELECT (SELECT public.fn_plpgsql_write(1))",
            call_simple(&client, "SELECT coalesce(public.FN_PLPGSQL_WRITE(1), 0)").await,
        );
        assert_on_primary(
            "extended SELECT fn_plpgsql_write(2) in a CTE",
            call_extended(
                &client,
                "WITH w AS (SELECT fn_plpgsql_write(2) AS n) SELECT n FROM w",
            )
            .await,
        );
    }
    assert_eq!(logged("fn_plpgsql"), (3 * CALLS).to_string());
}

/// STABLE functions and built-ins stay on the replicas: only what may write goes to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stable_function_runs_on_a_replica_while_a_volatile_one_goes_to_the_primary() {
    create_functions(
        "fn_stable",
        "CREATE OR REPLACE FUNCTION fn_stable_port() RETURNS int LANGUAGE sql STABLE AS \
         $$ SELECT inet_server_port() $$;\n\
         CREATE OR REPLACE FUNCTION fn_stable_volatile() RETURNS int LANGUAGE sql VOLATILE AS \
         $$ INSERT INTO fn_stable_log (port) VALUES (inet_server_port()) RETURNING port $$;",
    );
    let proxy = start_proxy(cluster(), &functions_config(""));
    let client = proxy.connect().await;
    for _ in 0..CALLS {
        let stable = call_simple(&client, "fn_stable_port()").await;
        if let Ok((value, (port, _))) = &stable {
            assert_eq!(
                value,
                &port.to_string(),
                "the STABLE function ran where the query did"
            );
        }
        assert_on_replica("SELECT fn_stable_port()", stable);
        assert_on_replica(
            "extended SELECT fn_stable_port() + random()",
            call_extended(&client, "fn_stable_port() + random()::int").await,
        );
        assert_on_primary(
            "SELECT fn_stable_volatile()",
            call_simple(&client, "fn_stable_volatile()").await,
        );
        assert_on_primary(
            "SELECT fn_stable_port() + fn_stable_volatile()",
            call_extended(&client, "fn_stable_port() + fn_stable_volatile()").await,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_functions_force_the_primary_and_read_functions_allow_a_replica() {
    create_functions(
        "fn_lists",
        "CREATE OR REPLACE FUNCTION fn_lists_stable() RETURNS int LANGUAGE sql STABLE AS \
         $$ SELECT inet_server_port() $$;\n\
         CREATE OR REPLACE FUNCTION fn_lists_harmless() RETURNS int LANGUAGE sql VOLATILE AS \
         $$ SELECT inet_server_port() $$;\n\
         CREATE OR REPLACE FUNCTION fn_lists_volatile() RETURNS int LANGUAGE sql VOLATILE AS \
         $$ SELECT inet_server_port() $$;",
    );
    let proxy = start_proxy(
        cluster(),
        &functions_config(
            "write_functions = [\"FN_LISTS_STABLE\"]\n\
             read_functions = [\"public.fn_lists_harmless\"]",
        ),
    );
    let client = proxy.connect().await;
    for _ in 0..CALLS {
        assert_on_primary(
            "a STABLE function in write_functions",
            call_simple(&client, "fn_lists_stable()").await,
        );
        assert_on_replica(
            "a VOLATILE function in read_functions, called with its schema",
            call_extended(&client, "public.fn_lists_harmless()").await,
        );
        // The catalog still decides for the others.
        assert_on_primary(
            "a VOLATILE function in no list",
            call_simple(&client, "fn_lists_volatile()").await,
        );
    }
}

/// Function DDL through pgroute refreshes what it knows: the next call follows the new
/// definition, for the simple protocol (`CREATE OR REPLACE` in a transaction) and the extended
/// one (`ALTER FUNCTION`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_ddl_through_pgroute_changes_where_the_next_call_goes() {
    let proxy = start_proxy(cluster(), &functions_config(""));
    let client = proxy.connect().await;
    let define = |volatility: &str| {
        format!(
            "CREATE OR REPLACE FUNCTION fn_ddl_changes() RETURNS int LANGUAGE sql {volatility} AS \
             $$ SELECT inet_server_port() $$"
        )
    };
    client
        .batch_execute(&define("STABLE"))
        .await
        .expect("create STABLE");
    caught_up();
    for _ in 0..CALLS {
        assert_on_replica(
            "while STABLE",
            call_simple(&client, "fn_ddl_changes()").await,
        );
    }
    client
        .batch_execute(&format!("BEGIN; {}; COMMIT", define("VOLATILE")))
        .await
        .expect("replace as VOLATILE");
    caught_up();
    for _ in 0..CALLS {
        assert_on_primary(
            "once VOLATILE",
            call_simple(&client, "fn_ddl_changes()").await,
        );
    }
    // Another session sees the change as well.
    let other = proxy.connect().await;
    assert_on_primary(
        "once VOLATILE, in another session",
        call_extended(&other, "fn_ddl_changes()").await,
    );
    client
        .execute("ALTER FUNCTION fn_ddl_changes() STABLE", &[])
        .await
        .expect("ALTER FUNCTION … STABLE (extended protocol)");
    caught_up();
    for _ in 0..CALLS {
        assert_on_replica(
            "STABLE again",
            call_extended(&other, "fn_ddl_changes()").await,
        );
    }
}

/// `routing.functions = "builtin"`: no lookup, as before the catalog: a VOLATILE function that
/// writes, called from a SELECT, goes to a replica, which refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_builtin_functions_only_a_writing_function_goes_to_a_replica() {
    create_functions(
        "fn_builtin",
        "CREATE OR REPLACE FUNCTION fn_builtin_write() RETURNS int LANGUAGE sql VOLATILE AS \
         $$ INSERT INTO fn_builtin_log (port) VALUES (inet_server_port()) RETURNING port $$;",
    );
    let proxy = start_proxy(cluster(), &functions_config("functions = \"builtin\""));
    let client = proxy.connect().await;
    for _ in 0..CALLS {
        match call_simple(&client, "fn_builtin_write()").await {
            Err(e) => assert_eq!(
                e.code(),
                &SqlState::READ_ONLY_SQL_TRANSACTION,
                "{}",
                e.message()
            ),
            Ok((_, ran_on)) => panic!("with functions = \"builtin\" the call ran on {ran_on:?}"),
        }
    }
    // write_functions still applies without the catalog.
    drop(client);
    drop(proxy);
    let proxy = start_proxy(
        cluster(),
        &functions_config("functions = \"builtin\"\nwrite_functions = [\"fn_builtin_write\"]"),
    );
    let client = proxy.connect().await;
    assert_on_primary(
        "listed in write_functions",
        call_simple(&client, "fn_builtin_write()").await,
    );
    assert_eq!(logged("fn_builtin"), "1");
}

/// When the primary's catalog cannot be asked, a read calling a function not looked up yet goes
/// to the primary (the safe side), and keeps going there while lookups fail. Here the lookup
/// login (the monitor's) may not connect to the client's database; elsewhere lookups work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_sends_the_read_to_the_primary() {
    ensure_role("fn_monitor", "fn-monitor-secret");
    on_primary("GRANT pg_monitor TO fn_monitor");
    if on_primary("SELECT count(*) FROM pg_database WHERE datname = 'fn_faildb'") == "0" {
        on_primary(&format!("CREATE DATABASE fn_faildb OWNER {USER}"));
    }
    on_primary("REVOKE CONNECT ON DATABASE fn_faildb FROM PUBLIC");
    on_primary(&format!("GRANT CONNECT ON DATABASE fn_faildb TO {USER}"));
    create_functions(
        "fn_fail",
        "CREATE OR REPLACE FUNCTION fn_fail_stable() RETURNS int LANGUAGE sql STABLE AS \
         $$ SELECT inet_server_port() $$;",
    );
    let proxy = start_proxy(
        cluster(),
        &format!(
            "{}\n[monitor]\nuser = \"fn_monitor\"\npassword = \"fn-monitor-secret\"\n",
            functions_config("")
        ),
    );
    let faildb = common::connect(&conn_str(proxy.port, USER, Some(PASSWORD), "fn_faildb")).await;
    faildb
        .batch_execute(
            "CREATE OR REPLACE FUNCTION fn_fail_stable() RETURNS int LANGUAGE sql STABLE AS \
             $$ SELECT inet_server_port() $$",
        )
        .await
        .expect("create the function in fn_faildb");
    caught_up();
    for _ in 0..CALLS {
        assert_on_primary(
            "a STABLE function whose lookup fails",
            call_simple(&faildb, "fn_fail_stable()").await,
        );
        // Built-ins need no lookup: still on a replica.
        assert_on_replica("a built-in", call_simple(&faildb, "now()").await);
    }
    // In a database the lookup login may use, the same function stays on a replica.
    let client = proxy.connect().await;
    for _ in 0..CALLS {
        assert_on_replica(
            "a STABLE function looked up",
            call_simple(&client, "fn_fail_stable()").await,
        );
    }
}

/// Sessions calling a function nobody has looked up yet, all at once, share its lookup: each
/// call waits for the same answer and runs on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_all_go_to_the_primary() {
    create_functions(
        "fn_concurrent",
        "CREATE OR REPLACE FUNCTION fn_concurrent_write() RETURNS int LANGUAGE sql AS \
         $$ INSERT INTO fn_concurrent_log (port) VALUES (inet_server_port()) RETURNING port $$;",
    );
    let proxy = start_proxy(cluster(), &functions_config(""));
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(proxy.connect().await);
    }
    let calls = clients.iter().enumerate().map(|(i, c)| async move {
        if i % 2 == 0 {
            call_simple(c, "fn_concurrent_write()").await
        } else {
            call_extended(c, "fn_concurrent_write()").await
        }
    });
    for result in futures::future::join_all(calls).await {
        assert_on_primary("a concurrent first call", result);
    }
    assert_eq!(logged("fn_concurrent"), "8");
}
