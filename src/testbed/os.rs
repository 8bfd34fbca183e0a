//! Operating-system helpers for the test bed: finding the PostgreSQL binaries, running commands
//! (as the `postgres` user when root), free ports, temporary directories.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Instant;

use tracing::debug;

use super::{io_error, Result, ServerUser, TestbedError, BINDIR_ENV, POLL_INTERVAL};

/// Finds the directory holding `initdb`: `$PGROUTE_PG_BINDIR`, then `pg_config --bindir`, then
/// the newest `/usr/lib/postgresql/<version>/bin`.
pub(super) fn find_bin_dir() -> Result<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os(BINDIR_ENV).map(PathBuf::from) {
        return has_initdb(&dir)
            .then_some(dir)
            .ok_or(TestbedError::NoBinaries);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let versions = fs::read_dir("/usr/lib/postgresql").map_err(|_| TestbedError::NoBinaries)?;
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or(TestbedError::NoBinaries)
}

/// A client program: beside the server binaries if there, else Debian's wrapper, else `$PATH`.
pub(super) fn client_binary(bin_dir: &Path, name: &str) -> PathBuf {
    [bin_dir.join(name), Path::new("/usr/bin").join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

pub(super) fn runuser_path() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

/// `Some(postgres user)` when this process is root, as PostgreSQL will not run as root.
pub(super) fn server_user() -> Result<Option<ServerUser>> {
    if effective_uid() != Some(0) {
        return Ok(None);
    }
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(io_error("could not read /etc/passwd"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres"))
        .and_then(|fields| {
            let uid = fields.get(2)?.parse().ok()?;
            let gid = fields.get(3)?.parse().ok()?;
            Some(Some(ServerUser { uid, gid }))
        })
        .ok_or(TestbedError::NoServerUser)
}

pub(super) fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Creates the base directory, traversable by the server user.
pub(super) fn make_base_dir(requested: Option<PathBuf>) -> Result<(PathBuf, bool)> {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let (dir, created) = match requested {
        Some(dir) => {
            fs::create_dir_all(&dir)
                .map_err(io_error(format!("could not create {}", dir.display())))?;
            (dir, false)
        }
        None => loop {
            let name = format!(
                "pgroute-testbed-{}-{}",
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(name);
            match fs::create_dir(&dir) {
                Ok(()) => break (dir, true),
                // Left behind by an earlier process with our pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(format!("could not create {}", dir.display()))(e)),
            }
        },
    };
    let dir = std::path::absolute(&dir).map_err(io_error(format!("bad path {}", dir.display())))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .map_err(io_error(format!("could not chmod {}", dir.display())))?;
    Ok((dir, created))
}

/// Distinct free loopback ports: all listeners are held at once, then released.
pub(super) fn free_ports(count: usize) -> Result<Vec<u16>> {
    let context = "could not find a free port on 127.0.0.1";
    let listeners = (0..count)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<io::Result<Vec<_>>>()
        .map_err(io_error(context))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<io::Result<_>>()
        .map_err(io_error(context))
}

/// Drops libpq settings inherited from the environment, which would redirect our commands.
pub(super) fn scrub_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

/// Runs `cmd` to completion with no input and returns its stdout.
pub(super) fn run(mut cmd: Command) -> Result<String> {
    let desc = describe(&cmd);
    debug!(cmd = %desc, "running");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_error(format!("could not run `{desc}`")))?;
    check_output(desc, output)
}

pub(super) fn check_output(cmd: String, output: Output) -> Result<String> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(TestbedError::Command {
            cmd,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

pub(super) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines the server logged since `offset`, for error messages.
pub(super) fn read_log_since(log: &Path, offset: u64) -> String {
    let Ok(bytes) = fs::read(log) else {
        return String::from("(no log)");
    };
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Polls `ready` until it returns `Ok(true)`; errors count as "not yet" until the deadline.
pub(super) fn wait_until(
    deadline: Instant,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let mut last_error = None;
    loop {
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            let why = last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(TestbedError::Timeout(format!("{what}{why}")));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

pub(super) fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}
