//! Building a fresh cluster: node directories, `initdb` and the shared settings, the application
//! role, replicas from `pg_basebackup`, a fresh port when one was taken, and the watchdog.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::os::*;
use super::{io_error, Cluster, Result, TestbedError};

/// How many times a node is started on a fresh port when its port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;
/// The file, inside each data directory, that holds that node's own settings.
const NODE_CONF: &str = "pgroute_testbed.conf";

/// Appended to every node's `postgresql.conf`; replicas inherit it through `pg_basebackup`.
/// Durability is traded for speed (`fsync`, `full_page_writes`): the data is thrown away.
const SHARED_CONF: &str = "
# pgroute testbed
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
fsync = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
logging_collector = off
password_encryption = 'scram-sha-256'
include 'pgroute_testbed.conf'
";

/// Replaces the `pg_hba.conf` written by `initdb`.
const PG_HBA: &str = "\
# pgroute testbed: the superuser is trusted locally, everyone else uses SCRAM.
local all         all                   trust
local replication all                   trust
host  replication postgres 127.0.0.1/32 trust
host  all         postgres 127.0.0.1/32 trust
host  all         all      127.0.0.1/32 scram-sha-256
";

impl Cluster {
    pub(super) fn make_node_dirs(&self) -> Result<()> {
        for node in &self.nodes {
            let context = format!("could not create {}", node.dir.display());
            fs::create_dir(&node.dir).map_err(io_error(&context))?;
            fs::set_permissions(&node.dir, fs::Permissions::from_mode(0o755))
                .map_err(io_error(&context))?;
            self.give_to_server_user(&node.dir)?;
        }
        Ok(())
    }

    pub(super) fn init_primary(&mut self) -> Result<()> {
        let began = Instant::now();
        let data = self.nodes[0].data.clone();
        let mut initdb = self.server_cmd("initdb");
        // Host authentication is set by PG_HBA below; trust is only initdb's placeholder.
        initdb
            .args("-U postgres -A trust -E UTF8 --locale=C --no-sync -D".split(' '))
            .arg(&data);
        run(initdb)?;
        let conf = data.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io_error(format!("could not open {}", conf.display())))?;
        file.write_all(SHARED_CONF.as_bytes())
            .map_err(io_error(format!("could not write {}", conf.display())))?;
        self.write_server_file(&data.join("pg_hba.conf"), PG_HBA)?;
        self.start_fresh_node(0)?;
        info!(port = self.nodes[0].port, elapsed = ?began.elapsed(), "primary running");
        Ok(())
    }

    pub(super) fn create_app_role(&self, user: &str, password: &str) -> Result<()> {
        let role = format!("\"{}\"", user.replace('"', "\"\""));
        let password = password.replace('\'', "''");
        let sql = format!(
            "SET password_encryption = 'scram-sha-256';\n\
             CREATE ROLE {role} LOGIN PASSWORD '{password}';\n\
             GRANT ALL ON SCHEMA public TO {role};\n\
             GRANT pg_monitor TO {role};\n\
             GRANT EXECUTE ON FUNCTION pg_wal_replay_pause(), pg_wal_replay_resume(), \
             pg_promote(boolean, integer) TO {role};\n"
        );
        self.psql(0, &sql)?;
        debug!(user, "created application role");
        Ok(())
    }

    pub(super) fn add_replica(&mut self, node: usize) -> Result<()> {
        let began = Instant::now();
        let mut basebackup = self.server_cmd("pg_basebackup");
        let args = "-h 127.0.0.1 -U postgres -R -X stream -c fast --no-sync -p";
        basebackup
            .args(args.split(' '))
            .arg(self.nodes[0].port.to_string())
            .arg("-D")
            .arg(&self.nodes[node].data);
        run(basebackup)?;
        self.start_fresh_node(node)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        wait_until(
            deadline,
            &format!("node {node} to run as a standby"),
            || Ok(self.psql(node, "SELECT pg_is_in_recovery()")? == "t"),
        )?;
        info!(node, port = self.nodes[node].port, elapsed = ?began.elapsed(), "replica running");
        Ok(())
    }

    /// Writes the node's own settings and starts it, moving it to a fresh port if its port was
    /// taken since it was picked.
    fn start_fresh_node(&mut self, node: usize) -> Result<()> {
        let mut attempt = 1;
        loop {
            let n = &self.nodes[node];
            let settings = format!(
                "port = {}\nunix_socket_directories = '{}'\n",
                n.port,
                n.dir.to_string_lossy().replace('\'', "''")
            );
            self.write_server_file(&n.data.join(NODE_CONF), &settings)?;
            match self.start_node(node) {
                Err(TestbedError::Command { stderr, .. })
                    if attempt < PORT_ATTEMPTS && stderr.contains("could not bind") =>
                {
                    let port = self.fresh_port()?;
                    warn!(
                        node,
                        taken = n.port,
                        port,
                        "port was taken, retrying on another"
                    );
                    self.nodes[node].port = port;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A free port that no other node of this cluster is meant to use.
    fn fresh_port(&self) -> Result<u16> {
        loop {
            let port = free_ports(1)?[0];
            if self.nodes.iter().all(|n| n.port != port) {
                return Ok(port);
            }
        }
    }

    /// Starts the detached shell that stops the nodes and removes the directories once this
    /// process has exited, however it exited.
    pub(super) fn spawn_watchdog(&self) -> Result<Child> {
        let mut script = format!(
            "trap '' HUP INT\nwhile kill -0 {} 2>/dev/null; do sleep 1; done\n",
            std::process::id()
        );
        let pg_ctl = sh_quote(&self.bin_dir.join("pg_ctl"));
        let as_server_user = match self.server_user {
            Some(_) => format!("{} -u postgres -- ", sh_quote(&runuser_path())),
            None => String::new(),
        };
        for node in &self.nodes {
            script += &format!(
                "{as_server_user}{pg_ctl} stop -D {} -m immediate -w -t 30 >/dev/null 2>&1\n",
                sh_quote(&node.data)
            );
        }
        for dir in self.owned_dirs() {
            script += &format!("rm -rf {}\n", sh_quote(&dir));
        }
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .current_dir("/")
            // Inherited pipes would keep `cargo test` waiting for our output after we exit.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of our process group, so Ctrl-C or a runner killing the group spares it.
            .process_group(0)
            .spawn()
            .map_err(io_error("could not start the test cluster watchdog"))?;
        debug!(pid = child.id(), "watchdog started");
        Ok(child)
    }
}
