//! Throwaway local PostgreSQL clusters for the integration tests and `pgroute demo`.
//!
//! [`Cluster::start`] runs the installed `initdb`, `pg_basebackup -R` and `pg_ctl` in a temporary
//! directory on free loopback ports; as the `postgres` OS user (through `runuser`) when we are
//! root, since PostgreSQL refuses to run as root. The superuser `postgres` is trusted from
//! 127.0.0.1; every other role must use SCRAM-SHA-256. A detached watchdog shell stops the nodes
//! and removes the directories once this process is gone: the test harness never drops statics,
//! and a killed test never drops anything.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

mod os;
mod setup;
use os::*;

/// Overrides where the PostgreSQL server binaries are looked for.
pub const BINDIR_ENV: &str = "PGROUTE_PG_BINDIR";
/// How long, in seconds, `pg_ctl` may wait for a node to start, stop or promote.
const PG_CTL_TIMEOUT_SECS: &str = "60";
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long [`Cluster::start`] waits for fresh replicas to replay the primary's WAL.
const STARTUP_CATCH_UP: Duration = Duration::from_secs(60);

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Streaming replicas besides the primary. Default 2.
    pub replicas: usize,
    /// Application role created on the primary (LOGIN, SCRAM password). Default "app".
    pub user: String,
    /// Password of [`ClusterOptions::user`]. Default "app-secret".
    pub password: String,
    /// Directory holding the nodes. Default: a new directory under [`std::env::temp_dir`],
    /// removed at shutdown (a given directory is kept; only the node directories go).
    pub base_dir: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            replicas: 2,
            user: "app".to_owned(),
            password: "app-secret".to_owned(),
            base_dir: None,
        }
    }
}

/// Why the test bed could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// A file system operation failed, or a command could not be spawned.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: ExitStatus,
        stderr: String,
    },
    /// No directory with `initdb` was found.
    #[error("no initdb in ${BINDIR_ENV}, `pg_config --bindir` or /usr/lib/postgresql/*/bin")]
    NoBinaries,
    /// Running as root, but there is no `postgres` OS user to run the servers as.
    #[error("running as root, but there is no `postgres` OS user to run PostgreSQL as")]
    NoServerUser,
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

type Result<T, E = TestbedError> = std::result::Result<T, E>;

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> TestbedError {
    let context = context.into();
    move |source| TestbedError::Io { context, source }
}

/// The OS user the servers run as when this process is root.
#[derive(Debug, Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
struct Node {
    /// Holds the data directory, the Unix socket and the server log.
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    running: AtomicBool,
}

/// A running primary with streaming replicas. Stopped and removed on drop, and by a watchdog
/// process if this process dies first.
#[derive(Debug)]
pub struct Cluster {
    bin_dir: PathBuf,
    psql: PathBuf,
    server_user: Option<ServerUser>,
    base: PathBuf,
    /// Whether `base` was created by us and goes at shutdown.
    owns_base: bool,
    nodes: Vec<Node>,
    watchdog: Option<Child>,
    shut_down: bool,
}

impl Cluster {
    /// Starts a primary (node 0) and `opts.replicas` streaming replicas (nodes 1..), creates the
    /// application role, and returns once every replica has replayed the primary's WAL.
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        let began = Instant::now();
        let bin_dir = find_bin_dir()?;
        let server_user = server_user()?;
        let (base, owns_base) = make_base_dir(opts.base_dir.clone())?;
        let ports = free_ports(opts.replicas + 1)?;
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(index, &port)| {
                let dir = base.join(format!("node{index}"));
                Node {
                    data: dir.join("data"),
                    log: dir.join("postgres.log"),
                    dir,
                    port,
                    running: AtomicBool::new(false),
                }
            })
            .collect();
        let mut cluster = Cluster {
            psql: client_binary(&bin_dir, "psql"),
            bin_dir,
            server_user,
            base,
            owns_base,
            nodes,
            watchdog: None,
            shut_down: false,
        };
        info!(dir = %cluster.base.display(), bin_dir = %cluster.bin_dir.display(), "starting test cluster");
        // From here on an early return drops `cluster`, which cleans up what was started.
        cluster.watchdog = Some(cluster.spawn_watchdog()?);
        cluster.make_node_dirs()?;
        cluster.init_primary()?;
        cluster.create_app_role(&opts.user, &opts.password)?;
        for node in 1..cluster.nodes.len() {
            cluster.add_replica(node)?;
        }
        cluster.wait_replicas_caught_up(STARTUP_CATCH_UP)?;
        info!(ports = ?cluster.node_ports(), elapsed = ?began.elapsed(), "test cluster ready");
        Ok(cluster)
    }

    /// Port of node 0, the node started as primary (it may since have been stopped or demoted).
    pub fn primary_port(&self) -> u16 {
        self.port(0)
    }

    /// Ports of all nodes: index 0 is the initial primary, 1.. the replicas.
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Port of `node`. Panics if there is no such node.
    pub fn port(&self, node: usize) -> u16 {
        self.node(node).port
    }

    /// Directory of the PostgreSQL server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Data directory of `node`. Panics if there is no such node.
    pub fn data_dir(&self, node: usize) -> &Path {
        &self.node(node).data
    }

    /// Server log of `node`, useful when a test fails. Panics if there is no such node.
    pub fn log_file(&self, node: usize) -> &Path {
        &self.node(node).log
    }

    /// `pg_ctl stop -m <mode>` (`smart`, `fast` or `immediate`), waiting for the node to exit.
    pub fn stop(&self, node: usize, mode: &str) -> Result<()> {
        self.pg_ctl(node, "stop", &["-m", mode])?;
        self.node(node).running.store(false, Ordering::SeqCst);
        info!(node, port = self.port(node), mode, "stopped node");
        Ok(())
    }

    /// `pg_ctl start`, waiting until the node accepts connections (as primary or standby).
    pub fn start_node(&self, node: usize) -> Result<()> {
        let n = self.node(node);
        let log_offset = fs::metadata(&n.log).map(|m| m.len()).unwrap_or(0);
        match self.pg_ctl(node, "start", &["-l", &n.log.to_string_lossy()]) {
            Ok(_) => {
                n.running.store(true, Ordering::SeqCst);
                info!(node, port = n.port, "started node");
                Ok(())
            }
            Err(mut e) => {
                if let TestbedError::Command { stderr, .. } = &mut e {
                    let log = read_log_since(&n.log, log_offset);
                    *stderr = format!("{stderr}\n--- {} ---\n{log}", n.log.display());
                }
                Err(e)
            }
        }
    }

    /// `pg_ctl promote`, waiting until the node has left recovery.
    pub fn promote(&self, node: usize) -> Result<()> {
        self.pg_ctl(node, "promote", &[])?;
        info!(node, port = self.port(node), "promoted node");
        Ok(())
    }

    /// Points replica `replica` at `upstream` (its `primary_conninfo`, reloaded: PostgreSQL
    /// restarts the WAL receiver), as a failover manager does after a promotion. With the
    /// default `recovery_target_timeline = 'latest'` it follows `upstream`'s timeline.
    pub fn follow(&self, replica: usize, upstream: usize) -> Result<()> {
        let conninfo = self.psql(replica, "SELECT current_setting('primary_conninfo')")?;
        let port = format!("port={}", self.port(upstream));
        let repointed: Vec<String> = conninfo
            .split_whitespace()
            .map(|kv| {
                if kv.starts_with("port=") {
                    port.clone()
                } else {
                    kv.to_owned()
                }
            })
            .collect();
        let sql = format!(
            "ALTER SYSTEM SET primary_conninfo = '{}';\nSELECT pg_reload_conf();",
            repointed.join(" ").replace('\'', "''")
        );
        self.psql(replica, &sql)?;
        info!(replica, upstream, "replica repointed");
        Ok(())
    }

    /// Runs `sql` with `psql -X -A -t -q` as superuser `postgres` over TCP on database
    /// `postgres`, and returns its trimmed stdout (rows one per line, columns split by `|`).
    /// The SQL is read as a script, so each statement runs on its own, and the first error stops it.
    pub fn psql(&self, node: usize, sql: &str) -> Result<String> {
        self.psql_at(self.port(node), sql)
    }

    /// Makes a replica apply WAL only `delay` (e.g. `"2s"`, `"0"`) after the primary wrote it.
    pub fn set_apply_delay(&self, node: usize, delay: &str) -> Result<()> {
        let sql = format!(
            "ALTER SYSTEM SET recovery_min_apply_delay = '{}';\nSELECT pg_reload_conf();",
            delay.replace('\'', "''")
        );
        self.psql(node, &sql)?;
        debug!(node, delay, "set recovery_min_apply_delay");
        Ok(())
    }

    /// Waits until every running replica has replayed its upstream's current WAL position, as
    /// read when the wait begins. A replica whose upstream (from its `primary_conninfo`) is not
    /// a running node of this cluster is skipped: it cannot catch up.
    pub fn wait_replicas_caught_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for replica in 0..self.nodes.len() {
            if !self.node(replica).running.load(Ordering::SeqCst) {
                continue;
            }
            let Some(upstream) = self.upstream_of(replica)? else {
                continue;
            };
            let target = self.psql(
                upstream,
                "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_lsn() END",
            )?;
            let check = format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn");
            let what = format!("node {replica} to replay up to {target} of node {upstream}");
            wait_until(deadline, &what, || Ok(self.psql(replica, &check)? == "t"))?;
        }
        Ok(())
    }

    /// Stops every node (`-m immediate`) and removes the directories. Idempotent; also run on drop.
    pub fn shutdown(&mut self) {
        if std::mem::replace(&mut self.shut_down, true) {
            return;
        }
        for node in 0..self.nodes.len() {
            if self.node(node).data.join("postmaster.pid").exists() {
                if let Err(e) = self.stop(node, "immediate") {
                    warn!(node, error = %e, "could not stop node");
                }
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            // Only the shell dies; its `sleep 1` ends by itself.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        for dir in self.owned_dirs() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(dir = %dir.display(), error = %e, "could not remove test cluster directory");
                }
            }
        }
        info!(dir = %self.base.display(), "test cluster shut down");
    }

    fn node(&self, node: usize) -> &Node {
        let count = self.nodes.len();
        let message = || format!("test cluster has no node {node} (it has {count})");
        self.nodes
            .get(node)
            .unwrap_or_else(|| panic!("{}", message()))
    }

    /// The directories that go at shutdown.
    fn owned_dirs(&self) -> Vec<PathBuf> {
        if self.owns_base {
            vec![self.base.clone()]
        } else {
            self.nodes.iter().map(|n| n.dir.clone()).collect()
        }
    }

    /// The node that `replica` streams from, or `None` if it is no replica or its upstream is
    /// not a running node of this cluster.
    fn upstream_of(&self, replica: usize) -> Result<Option<usize>> {
        let row = self.psql(
            replica,
            "SELECT pg_is_in_recovery(), current_setting('primary_conninfo')",
        )?;
        let Some(conninfo) = row.strip_prefix("t|") else {
            return Ok(None);
        };
        let port = conninfo
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("port="))
            .and_then(|p| p.trim_matches('\'').parse::<u16>().ok());
        let upstream = self.nodes.iter().position(|n| Some(n.port) == port);
        match upstream {
            Some(up) if self.nodes[up].running.load(Ordering::SeqCst) => Ok(Some(up)),
            _ => {
                debug!(
                    replica,
                    ?port,
                    "upstream is not a running node; not waiting"
                );
                Ok(None)
            }
        }
    }

    fn pg_ctl(&self, node: usize, action: &str, extra: &[&str]) -> Result<String> {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg(action)
            .arg("-D")
            .arg(&self.node(node).data)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS])
            .args(extra);
        run(cmd)
    }

    fn psql_at(&self, port: u16, sql: &str) -> Result<String> {
        let mut cmd = Command::new(&self.psql);
        scrub_pg_env(&mut cmd);
        let args = "-X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres -f - -p";
        cmd.args(args.split(' '))
            .arg(port.to_string())
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGAPPNAME", "pgroute-testbed")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let summary: String = sql.chars().take(200).collect();
        let desc = format!("{} <<< {summary}", describe(&cmd));
        let mut child = cmd
            .spawn()
            .map_err(io_error(format!("could not run `{desc}`")))?;
        let stdin = child.stdin.take();
        // A writer thread, so that a large result cannot block psql while we still write.
        let output = thread::scope(|scope| {
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    // If psql exits early, its status and stderr tell why.
                    let _ = stdin.write_all(sql.as_bytes());
                }
            });
            child.wait_with_output()
        })
        .map_err(io_error(format!("could not run `{desc}`")))?;
        Ok(check_output(desc, output)?.trim().to_owned())
    }

    /// A command for a PostgreSQL server binary, run as the `postgres` OS user when we are root.
    fn server_cmd(&self, program: &str) -> Command {
        let exe = self.bin_dir.join(program);
        let mut cmd = match self.server_user {
            Some(_) => {
                let mut cmd = Command::new(runuser_path());
                cmd.args(["-u", "postgres", "--"]).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        // The server user may not be able to enter our working directory.
        cmd.current_dir(&self.base);
        scrub_pg_env(&mut cmd);
        cmd
    }

    fn write_server_file(&self, path: &Path, contents: &str) -> Result<()> {
        fs::write(path, contents)
            .map_err(io_error(format!("could not write {}", path.display())))?;
        self.give_to_server_user(path)
    }

    fn give_to_server_user(&self, path: &Path) -> Result<()> {
        match self.server_user {
            Some(user) => std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .map_err(io_error(format!("could not chown {}", path.display()))),
            None => Ok(()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
