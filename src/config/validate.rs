//! [`Config::validate`]: checks that need more than a type, each naming its key.

use std::collections::HashSet;
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{
    AuthMethod, Config, ConfigError, ConsistencyConfig, LagConfig, NodeConfig, PoolConfig, Role,
    RoutingConfig, RywMode, UserConfig,
};

/// Shortest allowed `lag.check_interval`: below it the monitor's own queries become load.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

fn positive(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(())
}

/// `routing.write_functions` and `routing.read_functions`: each entry `name` or
/// `schema.name`, without quotes or spaces.
fn validate_function_names(routing: &RoutingConfig) -> Result<(), ConfigError> {
    let lists = [
        ("routing.write_functions", &routing.write_functions),
        ("routing.read_functions", &routing.read_functions),
    ];
    for (key, names) in lists {
        for (i, name) in names.iter().enumerate() {
            let parts: Vec<&str> = name.split('.').collect();
            let well_formed = parts.len() <= 2
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                });
            if !well_formed {
                return Err(invalid(
                    format!("{key}[{i}]"),
                    format!("{name:?} is not a function name (\"name\" or \"schema.name\")"),
                ));
            }
        }
    }
    Ok(())
}

fn validate_limits(limits: &super::LimitsConfig) -> Result<(), ConfigError> {
    if limits.startup_timeout.is_zero() {
        return Err(invalid("limits.startup_timeout", "must be more than 0"));
    }
    let zero = [
        ("limits.client_idle_timeout", limits.client_idle_timeout),
        (
            "limits.idle_in_transaction_timeout",
            limits.idle_in_transaction_timeout,
        ),
        ("limits.query_timeout", limits.query_timeout),
    ];
    for (key, timeout) in zero {
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid(
                key,
                "must be more than 0 (leave it unset for no timeout)",
            ));
        }
    }
    if limits.max_message_size.as_u64() < 1024 {
        return Err(invalid("limits.max_message_size", "must be at least 1KiB"));
    }
    Ok(())
}

impl Config {
    /// Returns the configuration unchanged if it is usable, or the first problem found as
    /// [`ConfigError::Invalid`] naming the key, e.g. `nodes[1].addr: "localhost" is not
    /// host:port`.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "listen",
                format!("{:?} is not an ip:port address", self.listen),
            ));
        }
        if let Some(admin) = &self.admin.listen {
            if admin.parse::<SocketAddr>().is_err() {
                return Err(invalid(
                    "admin.listen",
                    format!("{admin:?} is not an ip:port address"),
                ));
            }
        }
        if self.max_client_conn == 0 {
            return Err(invalid("max_client_conn", "must be at least 1"));
        }
        validate_users(&self.users)?;
        validate_nodes(&self.nodes)?;
        validate_pool(&self.pool)?;
        validate_lag(&self.lag)?;
        validate_consistency(&self.consistency)?;
        validate_function_names(&self.routing)?;
        validate_limits(&self.limits)?;
        self.validate_monitor()?;
        self.validate_routing()?;
        Ok(self)
    }

    fn validate_monitor(&self) -> Result<(), ConfigError> {
        if self.monitor.user.as_deref() == Some("") {
            return Err(invalid("monitor.user", "must not be empty"));
        }
        if self.monitor.database.is_empty() {
            return Err(invalid("monitor.database", "must not be empty"));
        }
        if self.monitor_login().is_none() {
            let user = self.monitor.user.as_deref().unwrap_or_default();
            return Err(invalid(
                "monitor.password",
                format!("required because monitor.user {user:?} is not one of [[users]]"),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Rules and groups compile; nodes name only existing groups; the primary is not drained.
    fn validate_routing(&self) -> Result<(), ConfigError> {
        crate::router::rules::RuleSet::compile(self)?;
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(g) = node.groups.iter().find(|g| !self.groups.contains_key(*g)) {
                return Err(invalid(
                    format!("nodes[{i}].groups"),
                    format!("no group {g:?} in [groups]"),
                ));
            }
            if node.drain && node.role == Role::Primary {
                return Err(invalid(
                    format!("nodes[{i}].drain"),
                    "the primary cannot be drained: it is the only node that takes writes and \
                     transactions, so draining it would stop them; drain replicas only (to move \
                     the primary, promote a replica first)",
                ));
            }
        }
        Ok(())
    }
}

fn validate_users(users: &[UserConfig]) -> Result<(), ConfigError> {
    if users.is_empty() {
        return Err(invalid("users", "at least one user is required"));
    }
    let mut seen = HashSet::new();
    for (i, user) in users.iter().enumerate() {
        if user.name.is_empty() {
            return Err(invalid(format!("users[{i}].name"), "must not be empty"));
        }
        if !seen.insert(user.name.as_str()) {
            return Err(invalid(
                format!("users[{i}].name"),
                format!("duplicate user name {:?}", user.name),
            ));
        }
        if user.auth != AuthMethod::Trust && user.password.is_empty() {
            return Err(invalid(
                format!("users[{i}].password"),
                format!("must not be empty with auth = {:?}", user.auth.as_str()),
            ));
        }
    }
    Ok(())
}

fn validate_nodes(nodes: &[NodeConfig]) -> Result<(), ConfigError> {
    if nodes.is_empty() {
        return Err(invalid("nodes", "at least one node is required"));
    }
    let mut seen = HashSet::new();
    for (i, node) in nodes.iter().enumerate() {
        if node.name.is_empty() {
            return Err(invalid(format!("nodes[{i}].name"), "must not be empty"));
        }
        if !seen.insert(node.name.as_str()) {
            return Err(invalid(
                format!("nodes[{i}].name"),
                format!("duplicate node name {:?}", node.name),
            ));
        }
        if split_host_port(&node.addr).is_none() {
            return Err(invalid(
                format!("nodes[{i}].addr"),
                format!("{:?} is not host:port", node.addr),
            ));
        }
    }
    let primaries: Vec<&str> = nodes
        .iter()
        .filter(|n| n.role == Role::Primary)
        .map(|n| n.name.as_str())
        .collect();
    match primaries.len() {
        1 => Ok(()),
        0 => Err(invalid(
            "nodes",
            "exactly one node must have role = \"primary\" (found 0)",
        )),
        n => Err(invalid(
            "nodes",
            format!(
                "exactly one node must have role = \"primary\" (found {n}: {})",
                primaries.join(", ")
            ),
        )),
    }
}

fn validate_pool(pool: &PoolConfig) -> Result<(), ConfigError> {
    if pool.max_size == 0 {
        return Err(invalid("pool.max_size", "must be at least 1"));
    }
    positive("pool.connect_timeout", pool.connect_timeout)?;
    positive("pool.checkout_timeout", pool.checkout_timeout)?;
    positive("pool.idle_timeout", pool.idle_timeout)
}

fn validate_lag(lag: &LagConfig) -> Result<(), ConfigError> {
    if lag.max_bytes.as_u64() == 0 {
        return Err(invalid("lag.max_bytes", "must be greater than 0"));
    }
    positive("lag.max_time", lag.max_time)?;
    if lag.check_interval < MIN_CHECK_INTERVAL {
        return Err(invalid("lag.check_interval", "must be at least 10ms"));
    }
    // Written so that NaN fails too.
    if !(lag.recover_ratio > 0.0 && lag.recover_ratio <= 1.0) {
        return Err(invalid(
            "lag.recover_ratio",
            format!(
                "must be greater than 0 and at most 1 (got {})",
                lag.recover_ratio
            ),
        ));
    }
    Ok(())
}

fn validate_consistency(consistency: &ConsistencyConfig) -> Result<(), ConfigError> {
    if consistency.read_your_writes == RywMode::Time && consistency.stick_for.is_zero() {
        return Err(invalid(
            "consistency.stick_for",
            "must be greater than 0 when read_your_writes = \"time\"",
        ));
    }
    Ok(())
}

/// Splits `host:port` (or `[ipv6]:port`) into host and port; `None` unless the host is
/// non-empty and the port is a number from 1 to 65535. An IPv6 literal must be bracketed and
/// comes back without the brackets.
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(bracketed) => {
            let ipv6 = bracketed.strip_suffix(']')?;
            ipv6.parse::<Ipv6Addr>().ok()?;
            ipv6
        }
        // "::1:5432" cannot say where the address ends.
        None if host.contains(':') => return None,
        None => host,
    };
    let bad_host_char = |c: char| c.is_whitespace() || matches!(c, '/' | '[' | ']' | '@');
    if host.is_empty() || host.contains(bad_host_char) {
        return None;
    }
    // `u16::from_str` would also take "+5432".
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok()?;
    (port != 0).then_some((host, port))
}
