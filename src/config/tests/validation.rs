//! Validation: every bad value is refused with the key that holds it.

use super::*;

/// (`top`, `tail`) of [`minimal_with`], then the key and reason of the error it must produce.
const KEYED_ERRORS: &[(&str, &str, &str, &str)] = &[
    (
        "",
        "[limits]\nstartup_timeout = \"0s\"",
        "limits.startup_timeout",
        "must be more than 0",
    ),
    (
        "",
        "[limits]\nquery_timeout = \"0s\"",
        "limits.query_timeout",
        "must be more than 0 (leave it unset for no timeout)",
    ),
    (
        "",
        "[limits]\nmax_message_size = \"100B\"",
        "limits.max_message_size",
        "must be at least 1KiB",
    ),
    (
        "",
        "[routing]\nwrite_functions = [\"ok\", \"a.b.c\"]",
        "routing.write_functions[1]",
        "\"a.b.c\" is not a function name (\"name\" or \"schema.name\")",
    ),
    (
        "",
        "[routing]\nread_functions = [\"my fn()\"]",
        "routing.read_functions[0]",
        "\"my fn()\" is not a function name (\"name\" or \"schema.name\")",
    ),
    (
        "",
        "[routing]\nread_functions = [\".x\"]",
        "routing.read_functions[0]",
        "\".x\" is not a function name (\"name\" or \"schema.name\")",
    ),
    (
        "listen = \"localhost:6432\"",
        "",
        "listen",
        "\"localhost:6432\" is not an ip:port address",
    ),
    (
        "",
        "[admin]\nlisten = \"localhost:9930\"",
        "admin.listen",
        "\"localhost:9930\" is not an ip:port address",
    ),
    (
        "max_client_conn = 0",
        "",
        "max_client_conn",
        "must be at least 1",
    ),
    (
        "",
        "[pool]\nmax_size = 0",
        "pool.max_size",
        "must be at least 1",
    ),
    (
        "",
        "[pool]\nconnect_timeout = \"0s\"",
        "pool.connect_timeout",
        "must be greater than 0",
    ),
    (
        "",
        "[pool]\ncheckout_timeout = \"0ms\"",
        "pool.checkout_timeout",
        "must be greater than 0",
    ),
    (
        "",
        "[pool]\nidle_timeout = \"0s\"",
        "pool.idle_timeout",
        "must be greater than 0",
    ),
    (
        "",
        "[lag]\nmax_bytes = \"0B\"",
        "lag.max_bytes",
        "must be greater than 0",
    ),
    (
        "",
        "[lag]\nmax_time = \"0s\"",
        "lag.max_time",
        "must be greater than 0",
    ),
    (
        "",
        "[lag]\ncheck_interval = \"9ms\"",
        "lag.check_interval",
        "must be at least 10ms",
    ),
    (
        "",
        "[lag]\nrecover_ratio = 0.0",
        "lag.recover_ratio",
        "must be greater than 0 and at most 1 (got 0)",
    ),
    (
        "",
        "[lag]\nrecover_ratio = 1.5",
        "lag.recover_ratio",
        "must be greater than 0 and at most 1 (got 1.5)",
    ),
    (
        "",
        "[lag]\nrecover_ratio = nan",
        "lag.recover_ratio",
        "must be greater than 0 and at most 1 (got NaN)",
    ),
    (
        "",
        "[consistency]\nread_your_writes = \"time\"\nstick_for = \"0s\"",
        "consistency.stick_for",
        "must be greater than 0 when read_your_writes = \"time\"",
    ),
    (
        "",
        "[monitor]\nuser = \"\"",
        "monitor.user",
        "must not be empty",
    ),
    (
        "",
        "[monitor]\ndatabase = \"\"",
        "monitor.database",
        "must not be empty",
    ),
    (
        "",
        "[monitor]\nuser = \"watcher\"",
        "monitor.password",
        "required because monitor.user \"watcher\" is not one of [[users]]",
    ),
];

#[test]
fn validation_errors_name_their_key() {
    for &(top, tail, key, reason) in KEYED_ERRORS {
        let toml = minimal_with(top, tail);
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
        groups: Vec::new(),
        drain: false,
    };
    assert_eq!(node.host_port(), Some(("::1", 5433)));
}
