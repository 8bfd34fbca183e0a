//! Shared test harness: a real local cluster (primary + 2 streaming replicas, started once per
//! test binary) and pgroute itself, started in-process on a free loopback port.
#![allow(dead_code)]

pub mod raw;
pub mod scrape;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use pgroute::proxy::Proxy;
use pgroute::server;
use pgroute::testbed::{Cluster, ClusterOptions};
use tokio_util::sync::CancellationToken;

pub const USER: &str = "app";
pub const PASSWORD: &str = "app-secret";

/// The cluster shared by the tests of one binary. Tests that change it (lag, faults) start
/// their own with [`own_cluster`].
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        init_tracing();
        Cluster::start(ClusterOptions::default()).expect("start test cluster")
    })
}

/// Test logs through `RUST_LOG` (e.g. `RUST_LOG=pgroute=debug`); once per test binary.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn own_cluster() -> Cluster {
    Cluster::start(ClusterOptions::default()).expect("start test cluster")
}

/// pgroute running in-process; stopped when dropped.
pub struct TestProxy {
    pub port: u16,
    /// Where the `[admin]` HTTP endpoint listens, when the config turns it on.
    pub admin: Option<std::net::SocketAddr>,
    /// The running proxy (for reloads).
    pub proxy: std::sync::Arc<Proxy>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestProxy {
    /// A libpq-style connection string for `user`/`password` through the proxy.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname=postgres",
            self.port
        )
    }

    /// Connects with tokio-postgres; the connection task is spawned on the current runtime.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.conn_str()).await
    }

    /// Reloads the proxy with a whole TOML document, as SIGHUP does with the file.
    pub fn reload(&self, toml: &str) -> Result<(), String> {
        let cfg = pgroute::config::from_toml_str(toml).map_err(|e| e.to_string())?;
        self.proxy.reload(cfg).map_err(|e| e.to_string())
    }
}

pub async fn connect(conn_str: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conn_str, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conn_str}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts pgroute in front of `cluster` with extra TOML sections appended to the config.
pub fn start_proxy(cluster: &Cluster, extra: &str) -> TestProxy {
    start_proxy_toml(&pgroute::demo::config_toml(
        cluster,
        "127.0.0.1:0",
        USER,
        PASSWORD,
        extra,
    ))
}

/// Starts pgroute with a whole TOML document (for top-level keys such as `max_client_conn`).
pub fn start_proxy_toml(toml: &str) -> TestProxy {
    let cfg = pgroute::config::from_toml_str(toml).expect("valid test config");
    let shutdown = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let token = shutdown.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = server::bind(&cfg).await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let admin = pgroute::admin::bind(&cfg).await.expect("bind admin");
            let admin_addr = admin.as_ref().map(|l| l.local_addr().expect("admin addr"));
            let proxy = Proxy::new(cfg);
            if let Some(admin) = admin {
                tokio::spawn(pgroute::admin::serve(proxy.clone(), admin, token.clone()));
            }
            tx.send((port, admin_addr, proxy.clone()))
                .expect("send port");
            let stopped = token.clone();
            // Sessions get a moment to finish after shutdown, as in `pgroute`'s own main: a
            // session stuck on a server that never answers fails its test instead of hanging it.
            tokio::select! {
                _ = server::serve(proxy, listener, token) => {}
                _ = async {
                    stopped.cancelled().await;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                } => {}
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
    });
    let (port, admin, proxy) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("proxy started");
    TestProxy {
        port,
        admin,
        proxy,
        shutdown,
        thread: Some(thread),
    }
}

/// Runs `psql` against the proxy with the given extra arguments; returns (status, stdout, stderr).
pub fn psql(proxy: &TestProxy, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("psql")
        .arg(proxy.url())
        .args(["-X", "-A", "-t", "-q"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// How long tests wait for the shared cluster's replicas to replay everything.
pub const CATCH_UP: Duration = Duration::from_secs(10);

/// The shared cluster's primary port, as `inet_server_port()` reports it.
pub fn primary_port() -> i32 {
    i32::from(cluster().port(0))
}

/// The shared cluster's replica ports, as `inet_server_port()` reports them.
pub fn replica_ports() -> BTreeSet<i32> {
    [1, 2]
        .into_iter()
        .map(|n| i32::from(cluster().port(n)))
        .collect()
}

/// Runs `sql` on the shared cluster's primary as the superuser, bypassing pgroute.
pub fn on_primary(sql: &str) -> String {
    cluster()
        .psql(0, sql)
        .unwrap_or_else(|e| panic!("on the primary: {sql}: {e}"))
}

/// Waits until the shared cluster's replicas have replayed everything the primary wrote.
pub fn caught_up() {
    cluster()
        .wait_replicas_caught_up(CATCH_UP)
        .expect("replicas caught up");
}

/// The rows a simple Query returned, as text.
pub async fn simple_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
