use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;

use super::load::load_with_env;
use super::*;

const EXAMPLE: &str = include_str!("../../config/pgroute.toml");

const USER_APP: &str = r#"
[[users]]
name = "app"
password = "app-secret"
"#;

const PRIMARY_PG1: &str = r#"
[[nodes]]
name = "pg1"
addr = "127.0.0.1:5432"
role = "primary"
"#;

const REPLICA_PG2: &str = r#"
[[nodes]]
name = "pg2"
addr = "127.0.0.1:5433"
role = "replica"
"#;

/// A valid config with `top` before the arrays and `tail` (sections) after them.
fn minimal_with(top: &str, tail: &str) -> String {
    format!("{top}\n{USER_APP}\n{PRIMARY_PG1}\n{REPLICA_PG2}\n{tail}")
}

fn minimal() -> String {
    minimal_with("", "")
}

/// The key and reason of the validation error `toml` must produce.
fn invalid_of(toml: &str) -> (String, String) {
    match from_toml_str(toml) {
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        other => panic!("expected a validation error for\n{toml}\ngot {other:?}"),
    }
}

/// The message of the load (parse/type) error `toml` must produce.
fn load_error_of(toml: &str) -> String {
    match from_toml_str(toml) {
        Err(err @ ConfigError::Load { .. }) => err.to_string(),
        other => panic!("expected a load error for\n{toml}\ngot {other:?}"),
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

/// A config file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "pgroute-config-test-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("write temp config");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load_minimal_with_env(name: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = TempFile::new(name, &minimal());
    load_with_env(Some(&file.0), vars(env))
}

// ---- defaults -------------------------------------------------------------------------------

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.listen, "127.0.0.1:6432");
    assert_eq!(c.max_client_conn, 1000);
    assert!(c.users.is_empty() && c.nodes.is_empty());

    assert_eq!(c.pool.mode, PoolMode::Transaction);
    assert_eq!(c.pool.max_size, 20);
    assert_eq!(c.pool.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.pool.checkout_timeout, Duration::from_secs(5));
    assert_eq!(c.pool.idle_timeout, Duration::from_secs(600));

    assert_eq!(c.lag.max_bytes, ByteSize::b(16_000_000));
    assert_eq!(c.lag.max_time, Duration::from_secs(1));
    assert_eq!(c.lag.check_interval, Duration::from_millis(100));
    assert_eq!(c.lag.when_all_lagging, WhenAllLagging::Primary);
    assert_eq!(c.lag.recover_ratio, 0.5);

    assert_eq!(c.routing.balance, Balance::LeastOutstanding);
    assert_eq!(c.routing.read_only_transactions, ReadOnlyTxnRoute::Primary);

    assert_eq!(c.consistency.read_your_writes, RywMode::Lsn);
    assert_eq!(c.consistency.max_wait, Duration::ZERO);
    assert_eq!(c.consistency.stick_for, Duration::from_secs(1));

    assert_eq!(c.monitor.user, None);
    assert_eq!(c.monitor.password, None);
    assert_eq!(c.monitor.database, "postgres");
}

#[test]
fn default_config_alone_does_not_validate() {
    let err = Config::default()
        .validate()
        .expect_err("no users, no nodes");
    assert_eq!(err.to_string(), "users: at least one user is required");
}

#[test]
fn minimal_file_gets_defaults_everywhere_else() {
    let c = from_toml_str(&minimal()).expect("minimal config");
    let defaults = Config::default();
    assert_eq!(c.listen, defaults.listen);
    assert_eq!(c.max_client_conn, defaults.max_client_conn);
    assert_eq!(c.pool, defaults.pool);
    assert_eq!(c.lag, defaults.lag);
    assert_eq!(c.routing, defaults.routing);
    assert_eq!(c.consistency, defaults.consistency);
    assert_eq!(c.monitor, defaults.monitor);

    let app = &c.users[0];
    assert_eq!(app.auth, AuthMethod::ScramSha256);
    assert_eq!(app.server_password, None);
    assert_eq!(app.server_password(), "app-secret");
    assert_eq!(c.nodes[1].weight, 1);
    assert_eq!(c.primary().map(|n| n.name.as_str()), Some("pg1"));
    assert_eq!(c.monitor_login(), Some(("app", "app-secret")));
}

#[test]
fn server_password_overrides_password() {
    let toml = r#"
[[users]]
name = "app"
password = "client-side"
server_password = "server-side"
auth = "md5"
"#;
    let c = from_toml_str(&format!("{toml}{PRIMARY_PG1}")).expect("valid");
    assert_eq!(c.users[0].server_password(), "server-side");
    assert_eq!(c.users[0].auth, AuthMethod::Md5);
    assert_eq!(c.monitor_login(), Some(("app", "server-side")));
}

#[test]
fn monitor_login_uses_its_own_user_when_given() {
    let c = from_toml_str(&minimal_with(
        "",
        "[monitor]\nuser = \"watcher\"\npassword = \"w\"\ndatabase = \"ops\"",
    ))
    .expect("valid");
    assert_eq!(c.monitor_login(), Some(("watcher", "w")));
    assert_eq!(c.monitor.database, "ops");
}

// ---- the example file -------------------------------------------------------------------------

#[test]
fn example_file_parses_and_validates() {
    let c = from_toml_str(EXAMPLE).expect("config/pgroute.toml must be valid");
    assert_eq!(c.listen, "127.0.0.1:6432");
    assert_eq!(c.users.len(), 1);
    assert_eq!(c.users[0].name, "app");
    assert_eq!(c.users[0].password, "app-secret");
    let nodes: Vec<(&str, &str, Role)> = c
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.addr.as_str(), n.role))
        .collect();
    assert_eq!(
        nodes,
        [
            ("pg1", "127.0.0.1:5432", Role::Primary),
            ("pg2", "127.0.0.1:5433", Role::Replica),
            ("pg3", "127.0.0.1:5434", Role::Replica),
        ]
    );
    assert_eq!(c.consistency.read_your_writes, RywMode::Lsn);
}

/// The example claims to show every default; hold it to that.
#[test]
fn example_file_values_are_the_defaults() {
    let c = from_toml_str(EXAMPLE).expect("valid");
    let defaults = Config::default();
    assert_eq!(c.listen, defaults.listen);
    assert_eq!(c.max_client_conn, defaults.max_client_conn);
    assert_eq!(c.pool, defaults.pool);
    assert_eq!(c.lag, defaults.lag);
    assert_eq!(c.routing, defaults.routing);
    assert_eq!(c.consistency, defaults.consistency);
    assert_eq!(c.monitor, defaults.monitor);
    assert!(c
        .users
        .iter()
        .all(|u| u.auth == AuthMethod::default() && u.server_password.is_none()));
    assert!(c.nodes.iter().all(|n| n.weight == 1));
}

// ---- validation -------------------------------------------------------------------------------

#[test]
fn validation_errors_name_their_key() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            minimal_with("listen = \"localhost:6432\"", ""),
            "listen",
            "\"localhost:6432\" is not an ip:port address",
        ),
        (
            minimal_with("max_client_conn = 0", ""),
            "max_client_conn",
            "must be at least 1",
        ),
        (
            minimal_with("", "[pool]\nmax_size = 0"),
            "pool.max_size",
            "must be at least 1",
        ),
        (
            minimal_with("", "[pool]\nconnect_timeout = \"0s\""),
            "pool.connect_timeout",
            "must be greater than 0",
        ),
        (
            minimal_with("", "[pool]\ncheckout_timeout = \"0ms\""),
            "pool.checkout_timeout",
            "must be greater than 0",
        ),
        (
            minimal_with("", "[pool]\nidle_timeout = \"0s\""),
            "pool.idle_timeout",
            "must be greater than 0",
        ),
        (
            minimal_with("", "[lag]\nmax_bytes = \"0B\""),
            "lag.max_bytes",
            "must be greater than 0",
        ),
        (
            minimal_with("", "[lag]\nmax_time = \"0s\""),
            "lag.max_time",
            "must be greater than 0",
        ),
        (
            minimal_with("", "[lag]\ncheck_interval = \"9ms\""),
            "lag.check_interval",
            "must be at least 10ms",
        ),
        (
            minimal_with("", "[lag]\nrecover_ratio = 0.0"),
            "lag.recover_ratio",
            "must be greater than 0 and at most 1 (got 0)",
        ),
        (
            minimal_with("", "[lag]\nrecover_ratio = 1.5"),
            "lag.recover_ratio",
            "must be greater than 0 and at most 1 (got 1.5)",
        ),
        (
            minimal_with("", "[lag]\nrecover_ratio = nan"),
            "lag.recover_ratio",
            "must be greater than 0 and at most 1 (got NaN)",
        ),
        (
            minimal_with(
                "",
                "[consistency]\nread_your_writes = \"time\"\nstick_for = \"0s\"",
            ),
            "consistency.stick_for",
            "must be greater than 0 when read_your_writes = \"time\"",
        ),
        (
            minimal_with("", "[monitor]\nuser = \"\""),
            "monitor.user",
            "must not be empty",
        ),
        (
            minimal_with("", "[monitor]\ndatabase = \"\""),
            "monitor.database",
            "must not be empty",
        ),
        (
            minimal_with("", "[monitor]\nuser = \"watcher\""),
            "monitor.password",
            "required because monitor.user \"watcher\" is not one of [[users]]",
        ),
    ];
    for (toml, key, reason) in cases {
        assert_eq!(
            invalid_of(&toml),
            (key.to_owned(), reason.to_owned()),
            "{toml}"
        );
    }
}

#[test]
fn users_are_required_and_checked() {
    assert_eq!(
        from_toml_str(PRIMARY_PG1)
            .expect_err("no users")
            .to_string(),
        "users: at least one user is required"
    );

    let duplicate = format!("{USER_APP}{USER_APP}{PRIMARY_PG1}");
    assert_eq!(
        invalid_of(&duplicate),
        ("users[1].name".into(), "duplicate user name \"app\"".into())
    );

    let unnamed = format!("[[users]]\nname = \"\"\npassword = \"x\"\n{PRIMARY_PG1}");
    assert_eq!(
        invalid_of(&unnamed),
        ("users[0].name".into(), "must not be empty".into())
    );

    let no_password = format!("[[users]]\nname = \"app\"\npassword = \"\"\n{PRIMARY_PG1}");
    assert_eq!(
        invalid_of(&no_password),
        (
            "users[0].password".into(),
            "must not be empty with auth = \"scram-sha-256\"".into()
        )
    );

    let trust =
        format!("[[users]]\nname = \"app\"\npassword = \"\"\nauth = \"trust\"\n{PRIMARY_PG1}");
    let c = from_toml_str(&trust).expect("trust needs no password");
    assert_eq!(c.users[0].auth, AuthMethod::Trust);
}

#[test]
fn nodes_are_required_and_checked() {
    assert_eq!(
        from_toml_str(USER_APP).expect_err("no nodes").to_string(),
        "nodes: at least one node is required"
    );

    let bad_addr = format!(
        "{USER_APP}{PRIMARY_PG1}[[nodes]]\nname = \"pg2\"\naddr = \"localhost\"\nrole = \"replica\""
    );
    assert_eq!(
        from_toml_str(&bad_addr).expect_err("bad addr").to_string(),
        r#"nodes[1].addr: "localhost" is not host:port"#
    );

    let two_primaries = format!(
        "{USER_APP}{PRIMARY_PG1}[[nodes]]\nname = \"pg2\"\naddr = \"127.0.0.1:5433\"\nrole = \"primary\""
    );
    assert_eq!(
        from_toml_str(&two_primaries)
            .expect_err("two primaries")
            .to_string(),
        r#"nodes: exactly one node must have role = "primary" (found 2: pg1, pg2)"#
    );

    let no_primary = format!("{USER_APP}{REPLICA_PG2}");
    assert_eq!(
        invalid_of(&no_primary),
        (
            "nodes".into(),
            r#"exactly one node must have role = "primary" (found 0)"#.into()
        )
    );

    let duplicate = format!("{USER_APP}{PRIMARY_PG1}{REPLICA_PG2}{REPLICA_PG2}");
    assert_eq!(
        invalid_of(&duplicate),
        ("nodes[2].name".into(), "duplicate node name \"pg2\"".into())
    );

    let unnamed = format!("{USER_APP}[[nodes]]\nname = \"\"\naddr = \"h:1\"\nrole = \"primary\"");
    assert_eq!(
        invalid_of(&unnamed),
        ("nodes[0].name".into(), "must not be empty".into())
    );
}

#[test]
fn weight_zero_is_allowed() {
    let toml = format!("{USER_APP}{PRIMARY_PG1}{REPLICA_PG2}weight = 0\n");
    let c = from_toml_str(&toml).expect("weight 0 is valid");
    assert_eq!(c.nodes[1].weight, 0);
}

#[test]
fn host_port_accepts_names_ips_and_bracketed_ipv6() {
    assert_eq!(split_host_port("127.0.0.1:5432"), Some(("127.0.0.1", 5432)));
    assert_eq!(
        split_host_port("db.internal:6543"),
        Some(("db.internal", 6543))
    );
    assert_eq!(split_host_port("[::1]:5432"), Some(("::1", 5432)));
    assert_eq!(split_host_port("h:65535"), Some(("h", 65535)));
    for bad in [
        "localhost",
        ":5432",
        "host:",
        "host:0",
        "host:65536",
        "host:+5432",
        "host:54x",
        "::1:5432",
        "[::1:5432",
        "[not-ipv6]:5432",
        "my host:5432",
        "/var/run/postgresql:5432",
    ] {
        assert_eq!(split_host_port(bad), None, "{bad}");
    }
    let node = NodeConfig {
        name: "pg1".into(),
        addr: "[::1]:5433".into(),
        role: Role::Primary,
        weight: 1,
    };
    assert_eq!(node.host_port(), Some(("::1", 5433)));
}

// ---- unknown keys and wrong types -----------------------------------------------------------

#[test]
fn unknown_keys_are_rejected_by_name() {
    let cases = [
        (minimal_with("listn = \"127.0.0.1:1\"", ""), "listn"),
        (minimal_with("", "[lag]\nmax_byte = \"1MB\""), "max_byte"),
        (minimal_with("", "[lags]\nmax_bytes = \"1MB\""), "lags"),
        (minimal_with("", "[pool]\nsize = 3"), "size"),
        (minimal_with("", "[monitor]\npasword = \"x\""), "pasword"),
        (format!("{USER_APP}{PRIMARY_PG1}adr = \"h:1\"\n"), "adr"),
        (format!("{USER_APP}secret = \"x\"\n{PRIMARY_PG1}"), "secret"),
    ];
    for (toml, key) in cases {
        let message = load_error_of(&toml);
        assert!(
            message.contains(&format!("`{key}`")),
            "{key:?} not named in: {message}"
        );
    }
}

#[test]
fn wrong_values_are_load_errors_naming_the_value() {
    let cases = [
        (
            minimal_with("", "[consistency]\nread_your_writes = \"eventual\""),
            "eventual",
        ),
        (minimal_with("", "[lag]\nmax_time = \"soon\""), "soon"),
        (minimal_with("", "[lag]\nmax_bytes = \"lots\""), "lots"),
        (
            minimal_with("", "[pool]\nmode = \"statement\""),
            "statement",
        ),
        (
            format!("{USER_APP}[[nodes]]\nname = \"pg1\"\naddr = \"h:1\"\nrole = \"leader\""),
            "leader",
        ),
    ];
    for (toml, value) in cases {
        let message = load_error_of(&toml);
        assert!(message.contains(value), "{value:?} not in: {message}");
    }
}

#[test]
fn missing_required_node_field_is_a_load_error() {
    let toml = format!("{USER_APP}[[nodes]]\nname = \"pg1\"\naddr = \"h:1\"");
    let message = load_error_of(&toml);
    assert!(message.contains("role"), "{message}");
}

#[test]
fn every_enum_spelling_round_trips() {
    fn check<T>(variants: &[T], section: &str, key: &str, get: impl Fn(&Config) -> T)
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display,
    {
        for &variant in variants {
            let toml = minimal_with("", &format!("[{section}]\n{key} = \"{variant}\""));
            let c = from_toml_str(&toml).expect("valid");
            assert_eq!(get(&c), variant, "{toml}");
        }
    }
    check(
        &[PoolMode::Transaction, PoolMode::Session],
        "pool",
        "mode",
        |c| c.pool.mode,
    );
    check(
        &[
            WhenAllLagging::Primary,
            WhenAllLagging::LeastLagged,
            WhenAllLagging::Error,
        ],
        "lag",
        "when_all_lagging",
        |c| c.lag.when_all_lagging,
    );
    check(
        &[
            Balance::LeastOutstanding,
            Balance::RoundRobin,
            Balance::Random,
        ],
        "routing",
        "balance",
        |c| c.routing.balance,
    );
    check(
        &[ReadOnlyTxnRoute::Primary, ReadOnlyTxnRoute::Replica],
        "routing",
        "read_only_transactions",
        |c| c.routing.read_only_transactions,
    );
    check(
        &[RywMode::Lsn, RywMode::Time, RywMode::Session, RywMode::Off],
        "consistency",
        "read_your_writes",
        |c| c.consistency.read_your_writes,
    );
    for auth in [AuthMethod::ScramSha256, AuthMethod::Md5, AuthMethod::Trust] {
        let toml =
            format!("[[users]]\nname = \"a\"\npassword = \"p\"\nauth = \"{auth}\"\n{PRIMARY_PG1}");
        assert_eq!(from_toml_str(&toml).expect("valid").users[0].auth, auth);
    }
    assert_eq!(AuthMethod::ScramSha256.as_str(), "scram-sha-256");
    assert_eq!(Role::Replica.to_string(), "replica");
}

#[test]
fn debug_output_hides_passwords() {
    let toml = minimal_with(
        "",
        "[monitor]\nuser = \"watcher\"\npassword = \"watch-secret\"",
    )
    .replace(
        "password = \"app-secret\"",
        "password = \"app-secret\"\nserver_password = \"srv-secret\"",
    );
    let c = from_toml_str(&toml).expect("valid");
    let debug = format!("{c:?}");
    for secret in ["app-secret", "srv-secret", "watch-secret"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    assert!(
        debug.contains("watcher") && debug.contains("pg1"),
        "{debug}"
    );
}

// ---- loading: file and environment ----------------------------------------------------------

#[test]
fn env_overrides_a_string() {
    let c =
        load_minimal_with_env("string", &[("PGROUTE_LISTEN", "127.0.0.1:7000")]).expect("valid");
    assert_eq!(c.listen, "127.0.0.1:7000");
}

#[test]
fn env_overrides_numbers() {
    let c = load_minimal_with_env(
        "numbers",
        &[
            ("PGROUTE_POOL__MAX_SIZE", "5"),
            ("PGROUTE_MAX_CLIENT_CONN", "50"),
            ("PGROUTE_LAG__RECOVER_RATIO", "0.25"),
        ],
    )
    .expect("valid");
    assert_eq!(c.pool.max_size, 5);
    assert_eq!(c.max_client_conn, 50);
    assert_eq!(c.lag.recover_ratio, 0.25);

    // An integer is also a fine ratio.
    let c = load_minimal_with_env("ratio", &[("PGROUTE_LAG__RECOVER_RATIO", "1")]).expect("valid");
    assert_eq!(c.lag.recover_ratio, 1.0);
}

#[test]
fn env_overrides_durations() {
    let c = load_minimal_with_env(
        "durations",
        &[
            ("PGROUTE_LAG__CHECK_INTERVAL", "250ms"),
            ("PGROUTE_POOL__CHECKOUT_TIMEOUT", "2s"),
            ("PGROUTE_CONSISTENCY__MAX_WAIT", "1m 30s"),
        ],
    )
    .expect("valid");
    assert_eq!(c.lag.check_interval, Duration::from_millis(250));
    assert_eq!(c.pool.checkout_timeout, Duration::from_secs(2));
    assert_eq!(c.consistency.max_wait, Duration::from_secs(90));
}

#[test]
fn env_overrides_byte_sizes() {
    let c = load_minimal_with_env("bytes", &[("PGROUTE_LAG__MAX_BYTES", "1MB")]).expect("valid");
    assert_eq!(c.lag.max_bytes, ByteSize::b(1_000_000));
    let c = load_minimal_with_env("bytes-raw", &[("PGROUTE_LAG__MAX_BYTES", "1048576")])
        .expect("valid");
    assert_eq!(c.lag.max_bytes, ByteSize::mib(1));
}

#[test]
fn env_overrides_enums() {
    let c = load_minimal_with_env(
        "enums",
        &[
            ("PGROUTE_CONSISTENCY__READ_YOUR_WRITES", "off"),
            ("PGROUTE_ROUTING__BALANCE", "round_robin"),
            ("PGROUTE_LAG__WHEN_ALL_LAGGING", "least_lagged"),
        ],
    )
    .expect("valid");
    assert_eq!(c.consistency.read_your_writes, RywMode::Off);
    assert_eq!(c.routing.balance, Balance::RoundRobin);
    assert_eq!(c.lag.when_all_lagging, WhenAllLagging::LeastLagged);
}

#[test]
fn env_numeric_looking_strings_stay_strings() {
    let c = load_minimal_with_env(
        "strings",
        &[
            ("PGROUTE_MONITOR__USER", "watcher"),
            ("PGROUTE_MONITOR__PASSWORD", "12345"),
            ("PGROUTE_MONITOR__DATABASE", "true"),
        ],
    )
    .expect("valid");
    assert_eq!(c.monitor.password.as_deref(), Some("12345"));
    assert_eq!(c.monitor.database, "true");
    assert_eq!(c.monitor_login(), Some(("watcher", "12345")));
}

#[test]
fn env_wins_over_the_file_and_keeps_other_file_values() {
    let file = TempFile::new(
        "precedence",
        &minimal_with(
            "listen = \"127.0.0.1:6000\"",
            "[pool]\nmax_size = 40\nidle_timeout = \"1m\"",
        ),
    );
    let c = load_with_env(Some(&file.0), vars(&[("PGROUTE_POOL__MAX_SIZE", "7")])).expect("valid");
    assert_eq!(c.pool.max_size, 7);
    assert_eq!(c.pool.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.listen, "127.0.0.1:6000");
    assert_eq!(
        c.pool.connect_timeout,
        PoolConfig::default().connect_timeout
    );
}

#[test]
fn env_values_are_validated() {
    let err = load_minimal_with_env("validated", &[("PGROUTE_LAG__CHECK_INTERVAL", "1ms")])
        .expect_err("too short");
    assert_eq!(err.to_string(), "lag.check_interval: must be at least 10ms");
}

#[test]
fn env_unknown_key_in_a_section_is_rejected() {
    let err = load_minimal_with_env("unknown", &[("PGROUTE_LAG__MAX_BYTE", "1MB")])
        .expect_err("unknown key");
    assert!(matches!(err, ConfigError::Load { .. }), "{err:?}");
    assert!(err.to_string().contains("`max_byte`"), "{err}");
}

#[test]
fn env_cannot_set_users_or_nodes() {
    let err = load_minimal_with_env("arrays", &[("PGROUTE_NODES__0__ADDR", "h:1")])
        .expect_err("file only");
    assert_eq!(
        err.to_string(),
        "PGROUTE_NODES__0__ADDR: [[nodes]] can only be set in the config file"
    );
}

#[test]
fn env_ignores_unrelated_variables() {
    let c = load_minimal_with_env(
        "unrelated",
        &[
            ("PGROUTE_CONFIG", "/etc/pgroute.toml"),
            ("PGROUTE_LOG", "debug"),
            ("PGROUTEX_LISTEN", "127.0.0.1:1"),
            ("LISTEN", "127.0.0.1:1"),
            ("PATH", "/usr/bin"),
        ],
    )
    .expect("valid");
    assert_eq!(c.listen, "127.0.0.1:6432");
}

#[test]
fn load_without_a_file_still_needs_users() {
    let err =
        load_with_env(None, vars(&[("PGROUTE_LISTEN", "127.0.0.1:7000")])).expect_err("no users");
    assert_eq!(err.to_string(), "users: at least one user is required");
}

#[test]
fn load_of_a_missing_file_fails() {
    let path = std::env::temp_dir().join("pgroute-config-test-does-not-exist.toml");
    let err = load_with_env(Some(&path), vars(&[])).expect_err("missing file");
    assert!(matches!(err, ConfigError::Load { .. }), "{err:?}");
}

#[test]
fn load_reads_a_file_whatever_its_extension() {
    let path = std::env::temp_dir().join(format!(
        "pgroute-config-test-{}-example.conf",
        std::process::id()
    ));
    std::fs::write(&path, EXAMPLE).expect("write temp config");
    let loaded = load_with_env(Some(&path), vars(&[]));
    let _ = std::fs::remove_file(&path);
    assert_eq!(loaded.expect("valid").nodes.len(), 3);
}

/// The one test that touches the process environment; the variable is read by no other test.
#[test]
fn load_reads_the_process_environment() {
    let file = TempFile::new("process-env", &minimal());
    std::env::set_var("PGROUTE_POOL__IDLE_TIMEOUT", "42s");
    let loaded = load(Some(&file.0));
    std::env::remove_var("PGROUTE_POOL__IDLE_TIMEOUT");
    assert_eq!(
        loaded.expect("valid").pool.idle_timeout,
        Duration::from_secs(42)
    );
}

#[test]
fn debug_output_shows_every_section_and_no_password() {
    let cfg = from_toml_str(&minimal_with("", "[failover]\nauto_promote = true\n")).expect("valid");
    let printed = format!("{cfg:#?}");
    for section in [
        "pool",
        "lag",
        "routing",
        "consistency",
        "monitor",
        "failover",
    ] {
        assert!(
            printed.contains(&format!("{section}: ")),
            "{section}: {printed}"
        );
    }
    assert!(printed.contains("auto_promote: true"), "{printed}");
    assert!(printed.contains("promote_after: 10s"), "{printed}");
    assert!(!printed.contains("app-secret"), "{printed}");
}

/// Every message of an error's chain, outermost first, as `{:#}` of an `anyhow` error joins them.
fn chain(err: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut next = err.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

#[test]
fn a_load_error_names_the_bad_key_once_in_its_chain() {
    let err =
        from_toml_str(&minimal_with("", "[lag]\nmax_bytes = \"16XB\"\n")).expect_err("bad size");
    let messages = chain(&err);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("lag.max_bytes"), "{messages:?}");
    let err = from_toml_str(&minimal_with("", "[lag]\nbogus = 1\n")).expect_err("unknown key");
    let messages = chain(&err);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].matches("`bogus`").count(), 1, "{messages:?}");
}
