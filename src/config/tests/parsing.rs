//! Parsing: unknown keys, wrong types, enum spellings, the Debug output and error chains.

use super::*;

#[test]
fn unknown_keys_are_rejected_by_name() {
    let cases = [
        (minimal_with("listn = \"127.0.0.1:1\"", ""), "listn"),
        (minimal_with("", "[lag]\nmax_byte = \"1MB\""), "max_byte"),
        (minimal_with("", "[lags]\nmax_bytes = \"1MB\""), "lags"),
        (minimal_with("", "[pool]\nsize = 3"), "size"),
        (minimal_with("", "[monitor]\npasword = \"x\""), "pasword"),
        (
            minimal_with("", "[admin]\nlistn = \"127.0.0.1:1\""),
            "listn",
        ),
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
        &[FunctionLookup::Catalog, FunctionLookup::Builtin],
        "routing",
        "functions",
        |c| c.routing.functions,
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
fn function_lists_are_read_as_written() {
    let toml = minimal_with(
        "",
        "[routing]\nwrite_functions = [\"audit.log_it\", \"Touch\"]\nread_functions = [\"cheap\"]",
    );
    let c = from_toml_str(&toml).expect("valid");
    assert_eq!(c.routing.write_functions, ["audit.log_it", "Touch"]);
    assert_eq!(c.routing.read_functions, ["cheap"]);
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
        "admin",
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
