//! Loading: the file and `PGROUTE_*` environment overrides.

use super::*;

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
fn env_sets_function_lists_comma_separated() {
    let c = load_minimal_with_env(
        "function-lists",
        &[
            ("PGROUTE_ROUTING__WRITE_FUNCTIONS", "audit.log_it,touch"),
            ("PGROUTE_ROUTING__READ_FUNCTIONS", "cheap"),
            ("PGROUTE_ROUTING__FUNCTIONS", "builtin"),
        ],
    )
    .expect("valid");
    assert_eq!(c.routing.write_functions, ["audit.log_it", "touch"]);
    assert_eq!(c.routing.read_functions, ["cheap"]);
    assert_eq!(c.routing.functions, FunctionLookup::Builtin);
    // Other string keys are still plain strings.
    let c = load_minimal_with_env("listen-string", &[("PGROUTE_LISTEN", "127.0.0.1:7000")])
        .expect("valid");
    assert_eq!(c.listen, "127.0.0.1:7000");
}
