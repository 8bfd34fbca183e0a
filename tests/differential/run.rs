//! Running one case on both sides: the shared environment (the primary, pgroute in front of
//! it, superuser and console connections), fresh tables per case, and the wait for what a case
//! leaves behind.

use super::*;

/// The shared state of one run.
pub(crate) struct Env {
    /// Superuser connection to the primary, bypassing pgroute.
    admin: tokio_postgres::Client,
    /// A client of pgroute, for `SHOW pgroute.nodes`.
    console: tokio_postgres::Client,
    proxy: TestProxy,
    primary: u16,
    next_id: AtomicU64,
}

fn proxy_toml(primary: u16) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\n[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [[nodes]]\nname = \"primary\"\naddr = \"127.0.0.1:{primary}\"\nrole = \"primary\"\n\n\
         [pool]\nmax_size = 60\n"
    )
}

pub(crate) async fn setup() -> Env {
    let primary = cluster().port(0);
    let admin = common::connect(&format!(
        "host=127.0.0.1 port={primary} user=postgres dbname=postgres"
    ))
    .await;
    let oid = admin
        .query_one("SELECT 'int4pl'::regproc::oid", &[])
        .await
        .expect("int4pl oid");
    assert_eq!(oid.get::<_, u32>(0), INT4PL_OID, "the oid of int4pl");
    let proxy = common::start_proxy_toml(&proxy_toml(primary));
    let console = common::connect(&format!(
        "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname=postgres \
         application_name=diff_console",
        proxy.port
    ))
    .await;
    let env = Env {
        admin,
        console,
        proxy,
        primary,
        next_id: AtomicU64::new(0),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.primary_row().await.map(|r| r[2].clone()) != Some("primary".into()) {
        assert!(Instant::now() < deadline, "pgroute never saw its primary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env
}

impl Env {
    /// The primary's row of `SHOW pgroute.nodes`.
    async fn primary_row(&self) -> Option<Vec<String>> {
        let rows = self.console.simple_query("SHOW pgroute.nodes").await.ok()?;
        rows.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_owned())
                    .collect(),
            ),
            _ => None,
        })
    }

    /// Clients pgroute counts as holding a server connection.
    async fn outstanding(&self) -> Option<usize> {
        self.primary_row().await?.get(8)?.parse().ok()
    }

    async fn admin_rows(&self, sql: &str) -> Vec<Vec<String>> {
        match self.admin.simple_query(sql).await {
            Ok(msgs) => msgs
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                        (0..r.len())
                            .map(|i| r.get(i).unwrap_or("NULL").to_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect(),
            Err(e) => panic!("as superuser on the primary: {sql}: {e}"),
        }
    }

    async fn create_tables(&self, tables: &[&str]) {
        let mut sql = String::new();
        for t in tables {
            let _ = write!(
                sql,
                "CREATE TABLE {t} (id int PRIMARY KEY, v text); ALTER TABLE {t} OWNER TO {USER}; \
                 INSERT INTO {t} VALUES (1, 'a'), (2, 'b'), (3, 'c');"
            );
        }
        self.admin_rows(&sql).await;
    }

    async fn contents(&self, table: &str) -> String {
        let sql = format!(
            "SELECT coalesce(string_agg(id || ':' || coalesce(v, 'NULL'), ' ' ORDER BY id), '') \
             FROM {table}"
        );
        self.admin_rows(&sql).await[0][0].clone()
    }
}

/// Runs `case` on both sides with fresh tables and compares everything.
pub(crate) async fn run_case(env: &Env, case: &Case) -> Outcome {
    let n = env.next_id.fetch_add(1, Ordering::Relaxed);
    let (ta, tb) = (format!("diff_{n}_a"), format!("diff_{n}_b"));
    env.create_tables(&[&ta, &tb]).await;
    let side = |port, app: String, table: &str, prelude: Vec<String>| Side {
        port,
        user: USER.into(),
        password: PASSWORD.into(),
        app,
        table: table.to_owned(),
        prelude,
    };
    // PostgreSQL answers `SHOW pgroute.lsn` with 42704 unless the placeholder is set.
    let prelude = vec!["SET pgroute.lsn = '0/0'".to_owned()];
    let direct_side = side(env.primary, format!("diff_d_{n}"), &ta, prelude);
    let proxied_side = side(env.proxy.port, format!("diff_p_{n}"), &tb, vec![]);
    let direct = diff_wire::run(&direct_side, case, DIRECT_TIMEOUT).await;
    let budget = (Duration::from_secs(1) + direct.elapsed * 4).min(PROXIED_TIMEOUT);
    let proxied = diff_wire::run(&proxied_side, case, budget).await;
    let mut outcome = Outcome {
        case: case.clone(),
        differences: Vec::new(),
        invalid: None,
        signature: None,
        direct,
        proxied,
    };
    if let Some(e) = &outcome.direct.startup_error {
        outcome.invalid = Some(format!("direct startup failed: {e}"));
        return outcome;
    }
    if outcome.direct.events.last() == Some(&Event::Hang) {
        outcome.invalid = Some("the direct side itself did not finish".into());
    }
    compare_streams(&mut outcome);
    for leak in settle(env, n, outcome.direct.pid).await {
        outcome.note("left behind", leak);
    }
    let (a, b) = (env.contents(&ta).await, env.contents(&tb).await);
    if a != b {
        let text = format!("table contents differ:\n    direct:  {a}\n    proxied: {b}");
        outcome.note("contents", text);
    }
    outcome
}

/// Waits until the case's server connections are gone (direct side) or idle (pgroute's pool);
/// returns what stayed behind, after terminating it.
async fn settle(env: &Env, n: u64, direct_pid: Option<i32>) -> Vec<String> {
    let sql = format!(
        "SELECT pid, application_name, state, left(query, 60) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND usename = '{USER}' AND (pid = {} \
         OR application_name = 'diff_d_{n}' \
         OR (state <> 'idle' AND (application_name = 'diff_p_{n}' \
             OR application_name LIKE 'diff\\_{n}\\_%')))",
        direct_pid.unwrap_or(0)
    );
    let deadline = Instant::now() + SETTLE;
    loop {
        let rows = env.admin_rows(&sql).await;
        if rows.is_empty() {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            for r in &rows {
                env.admin_rows(&format!("SELECT pg_terminate_backend({})", r[0]))
                    .await;
            }
            let side = |r: &Vec<String>| {
                if r[1] == format!("diff_d_{n}")
                    || Some(r[0].as_str()) == direct_pid.map(|p| p.to_string()).as_deref()
                {
                    "direct"
                } else {
                    "proxied"
                }
            };
            return rows
                .iter()
                .map(|r| {
                    format!(
                        "{} side: server connection left behind {SETTLE:?} after the case: \
                         pid {} application_name {:?} state {:?} query {:?}",
                        side(r),
                        r[0],
                        r[1],
                        r[2],
                        r[3]
                    )
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until pgroute counts no client holding a server connection; the count if it stays.
pub(crate) async fn outstanding_settles(env: &Env) -> Option<usize> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match env.outstanding().await {
            Some(0) => return None,
            other if Instant::now() >= deadline => return Some(other.unwrap_or(usize::MAX)),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
