//! Defaults, and the example file that claims to show them.

use super::*;

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
    assert_eq!(c.routing.functions, FunctionLookup::Catalog);
    assert!(c.routing.write_functions.is_empty() && c.routing.read_functions.is_empty());

    assert_eq!(c.consistency.read_your_writes, RywMode::Lsn);
    assert_eq!(c.consistency.max_wait, Duration::ZERO);
    assert_eq!(c.consistency.stick_for, Duration::from_secs(1));

    assert_eq!(c.monitor.user, None);
    assert_eq!(c.monitor.password, None);
    assert_eq!(c.monitor.database, "postgres");

    assert_eq!(c.admin.listen, None);
    let l = &c.limits;
    assert_eq!(l.startup_timeout, Duration::from_secs(10));
    assert_eq!(
        (
            l.client_idle_timeout,
            l.idle_in_transaction_timeout,
            l.query_timeout
        ),
        (None, None, None)
    );
    assert_eq!(l.server_lifetime, Duration::from_secs(3600));
    assert_eq!(
        (l.max_connections_per_user, l.max_connections_per_database),
        (0, 0)
    );
    assert_eq!(l.max_message_size, ByteSize::mib(64));
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
    assert_eq!(c.admin, defaults.admin);
    assert!(c
        .users
        .iter()
        .all(|u| u.auth == AuthMethod::default() && u.server_password.is_none()));
    assert!(c.nodes.iter().all(|n| n.weight == 1));
}

/// config/pgroute.toml has a commented example of every rule form, and they compile.
#[test]
fn example_file_shows_every_rule_form() {
    let c = from_toml_str(EXAMPLE).expect("valid");
    let r = &c.rules;
    let any = |f: &dyn Fn(&crate::config::RuleConfig) -> bool| r.iter().any(f);
    assert!(any(&|r| r.user.is_some()), "user");
    assert!(any(&|r| r.database.is_some()), "database");
    assert!(any(&|r| r.application_name.is_some()), "application_name");
    assert!(any(&|r| r.client_addr.is_some()), "client_addr");
    assert!(any(&|r| r.query.is_some()), "query");
    assert!(any(&|r| !r.tables.is_empty()), "tables");
    assert!(any(&|r| r.kind.is_some()), "kind");
    assert!(any(&|r| r.message.is_some()), "message");
    for route in ["primary", "replica", "group:", "block"] {
        assert!(any(&|r| r.route.starts_with(route)), "route {route}");
    }
    let set = crate::router::rules::RuleSet::compile(&c).expect("example rules compile");
    assert_eq!(set.rules.len(), r.len());
    assert!(set.groups.iter().any(|g| g.exclusive));
}
