//! Routing rules and replica groups from the config (`[[rules]]`, `[groups.<name>]`),
//! compiled once per configuration: globs, CIDRs and regular expressions are built at load,
//! so a bad pattern is a load error naming its key, and matching costs no parsing.
//!
//! A session computes once (and again when its `application_name` changes or the config is
//! reloaded) which rules its user, database, address and application can match
//! ([`RuleSet::session_candidates`]); per statement only those rules' statement matchers run
//! ([`RuleSet::steer`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobMatcher};
use ipnet::IpNet;
use regex::Regex;

use crate::classify::{Classification, Target};
use crate::config::{Config, ConfigError, RuleConfig, RuleKind, WhenGroupEmpty};

/// Most `[groups.<name>]` (a node's groups are a bit set).
pub const MAX_GROUPS: usize = 64;
/// Longest group name (it is carried in hints without allocation).
pub const MAX_GROUP_NAME: usize = 63;

/// Position of a group in [`RuleSet::groups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId(pub u8);

/// Position of a rule in [`RuleSet::rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(pub u16);

/// A set of groups, as a bit per [`GroupId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupSet(pub u64);

impl GroupSet {
    pub fn contains(self, g: GroupId) -> bool {
        self.0 & (1u64 << g.0) != 0
    }

    pub fn with(self, g: GroupId) -> GroupSet {
        GroupSet(self.0 | (1u64 << g.0))
    }

    pub fn intersects(self, other: GroupSet) -> bool {
        self.0 & other.0 != 0
    }
}

/// One replica group as routing reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: Arc<str>,
    pub exclusive: bool,
    /// Byte and time lag limits for reads routed to the group (None: the `[lag]` ones).
    pub max_bytes: Option<u64>,
    pub max_time: Option<Duration>,
    pub when_empty: WhenGroupEmpty,
}

/// Where a rule (or a hint) sends what it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleRoute {
    Primary,
    Replica,
    Group(GroupId),
    Block(Arc<str>),
}

impl RuleRoute {
    /// Routes that only reads may follow (a write always goes to the primary).
    fn reads_only(&self) -> bool {
        matches!(self, RuleRoute::Replica | RuleRoute::Group(_))
    }
}

/// What a session is, for the session matchers of rules.
#[derive(Debug, Clone, Copy)]
pub struct SessionInfo<'a> {
    pub user: &'a str,
    pub database: &'a str,
    pub application_name: &'a str,
    pub client_addr: Option<IpAddr>,
}

/// One statement, for the statement matchers of rules.
#[derive(Debug, Clone, Copy)]
pub struct StatementInfo<'a> {
    pub class: &'a Classification,
    /// The statement text (empty when it is not readable as UTF-8).
    pub text: &'a str,
    /// The session is inside a transaction block.
    pub in_transaction: bool,
}

impl StatementInfo<'_> {
    fn kind(&self) -> RuleKind {
        if self.class.txn.is_some() || self.in_transaction {
            RuleKind::Transaction
        } else if self.class.ddl {
            RuleKind::Ddl
        } else if self.class.target == Target::Read {
            RuleKind::Read
        } else {
            RuleKind::Write
        }
    }
}

/// A compiled `[[rules]]` entry.
#[derive(Debug)]
pub struct Rule {
    pub name: Arc<str>,
    user: Option<GlobMatcher>,
    database: Option<GlobMatcher>,
    application_name: Option<GlobMatcher>,
    client_addr: Option<IpNet>,
    query: Option<Regex>,
    tables: Option<TableMatcher>,
    kind: Option<RuleKind>,
    pub route: RuleRoute,
}

impl Rule {
    fn matches_session(&self, s: &SessionInfo) -> bool {
        let glob = |m: &Option<GlobMatcher>, v: &str| m.as_ref().is_none_or(|g| g.is_match(v));
        glob(&self.user, s.user)
            && glob(&self.database, s.database)
            && glob(&self.application_name, s.application_name)
            && self
                .client_addr
                .is_none_or(|net| s.client_addr.is_some_and(|a| net.contains(&canonical(a))))
    }

    fn matches_statement(&self, st: &StatementInfo) -> bool {
        self.kind.is_none_or(|k| k == st.kind())
            && self
                .tables
                .as_ref()
                .is_none_or(|t| st.class.tables.iter().any(|name| t.is_match(name)))
            && self.query.as_ref().is_none_or(|re| re.is_match(st.text))
    }
}

/// `::ffff:10.0.0.1` is 10.0.0.1 for a CIDR written in IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// `tables` globs: a pattern without a schema matches the table name in any schema; one with
/// a schema matches the qualified name, and an unqualified name as if in `public` (pgroute
/// does not follow `search_path`).
#[derive(Debug)]
struct TableMatcher {
    bare: Vec<TablePattern>,
    qualified: Vec<TablePattern>,
}

impl TableMatcher {
    fn is_match(&self, name: &str) -> bool {
        match name.rsplit_once('.') {
            Some((_, table)) => {
                self.bare.iter().any(|p| p.is_match("", table))
                    || self.qualified.iter().any(|p| p.is_match("", name))
            }
            None => {
                self.bare.iter().any(|p| p.is_match("", name))
                    || self.qualified.iter().any(|p| p.is_match("public.", name))
            }
        }
    }
}

/// One `tables` glob (case-insensitive). Runs per statement and per rule: the usual forms
/// (`audit_log`, `events_*`, `*.audit_log`) written in ASCII are compared in place, as a glob
/// engine's case-insensitive regex costs a hundred nanoseconds or more a pattern set. The
/// glob decides anything else, and any name that is not ASCII (where Unicode case folding
/// differs from ASCII's).
#[derive(Debug)]
struct TablePattern {
    fast: Option<FastGlob>,
    glob: GlobMatcher,
}

/// A glob with at most one `*`, at one end, and no other special character, in ASCII.
#[derive(Debug)]
enum FastGlob {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
}

impl FastGlob {
    fn of(pattern: &str) -> Option<FastGlob> {
        let plain = |s: &str| s.is_ascii() && !s.contains(['*', '?', '[', ']', '{', '}', '\\']);
        if plain(pattern) {
            Some(FastGlob::Exact(pattern.into()))
        } else if let Some(prefix) = pattern.strip_suffix('*').filter(|p| plain(p)) {
            Some(FastGlob::Prefix(prefix.into()))
        } else {
            let suffix = pattern.strip_prefix('*').filter(|p| plain(p))?;
            Some(FastGlob::Suffix(suffix.into()))
        }
    }

    /// Whether `head` followed by `name` (both ASCII) matches.
    fn is_match(&self, head: &str, name: &str) -> bool {
        let len = head.len() + name.len();
        let text = || head.bytes().chain(name.bytes());
        let eq = |p: &str, mut t: &mut dyn Iterator<Item = u8>| {
            p.bytes()
                .zip(&mut t)
                .all(|(a, b)| a.eq_ignore_ascii_case(&b))
        };
        match self {
            FastGlob::Exact(p) => p.len() == len && eq(p, &mut text()),
            FastGlob::Prefix(p) => p.len() <= len && eq(p, &mut text()),
            FastGlob::Suffix(p) => p.len() <= len && eq(p, &mut text().skip(len - p.len())),
        }
    }
}

impl TablePattern {
    fn new(pattern: &str) -> Result<TablePattern, String> {
        let glob = GlobBuilder::new(pattern)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("bad glob {pattern:?}: {e}"))?
            .compile_matcher();
        Ok(TablePattern {
            fast: FastGlob::of(pattern),
            glob,
        })
    }

    /// Whether `head` followed by `name` matches.
    fn is_match(&self, head: &str, name: &str) -> bool {
        match &self.fast {
            Some(fast) if name.is_ascii() => fast.is_match(head, name),
            _ if head.is_empty() => self.glob.is_match(name),
            _ => self.glob.is_match(format!("{head}{name}")),
        }
    }
}

/// The outcome of the rules for one unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// No rule or hint decided: the defaults route the unit.
    Default,
    /// Reads to the primary.
    Primary(By),
    /// Reads to the replicas outside exclusive groups.
    Replica(By),
    /// Reads to a group's replicas.
    Group(GroupId, By),
}

impl Steer {
    pub fn by(self) -> Option<By> {
        match self {
            Steer::Default => None,
            Steer::Primary(by) | Steer::Replica(by) | Steer::Group(_, by) => Some(by),
        }
    }
}

/// What steered a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Rule(RuleId),
    Hint,
}

/// A unit's rule outcome: where to steer it, or the block it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOutcome {
    Steer(Steer),
    Block(RuleId),
}

/// Every rule and group of one configuration.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub groups: Vec<Group>,
}

impl RuleSet {
    /// Compiles `[[rules]]` and `[groups]`; the error names the offending key.
    pub fn compile(config: &Config) -> Result<RuleSet, ConfigError> {
        if config.groups.len() > MAX_GROUPS {
            return Err(invalid("groups", format!("at most {MAX_GROUPS} groups")));
        }
        let mut groups = Vec::with_capacity(config.groups.len());
        for (name, g) in &config.groups {
            if !valid_group_name(name) {
                return Err(invalid(
                    format!("groups.{name}"),
                    format!("a group name is 1 to {MAX_GROUP_NAME} letters, digits, '_' or '-'"),
                ));
            }
            if g.max_bytes.is_some_and(|b| b.as_u64() == 0) {
                return Err(invalid(
                    format!("groups.{name}.max_bytes"),
                    "must be greater than 0",
                ));
            }
            if g.max_time.is_some_and(|t| t.is_zero()) {
                return Err(invalid(
                    format!("groups.{name}.max_time"),
                    "must be greater than 0",
                ));
            }
            groups.push(Group {
                name: name.as_str().into(),
                exclusive: g.exclusive,
                max_bytes: g.max_bytes.map(|b| b.as_u64()),
                max_time: g.max_time,
                when_empty: g.when_empty,
            });
        }
        let mut set = RuleSet {
            rules: Vec::with_capacity(config.rules.len()),
            groups,
        };
        if config.rules.len() > usize::from(u16::MAX) {
            return Err(invalid("rules", "too many rules"));
        }
        for (i, r) in config.rules.iter().enumerate() {
            if set.rules.iter().any(|earlier| *earlier.name == *r.name) {
                return Err(invalid(
                    format!("rules[{i}].name"),
                    format!("duplicate rule name {:?}", r.name),
                ));
            }
            let rule = set.compile_rule(i, r)?;
            set.rules.push(rule);
        }
        Ok(set)
    }

    fn compile_rule(&self, i: usize, r: &RuleConfig) -> Result<Rule, ConfigError> {
        let key = |field: &str| format!("rules[{i}].{field}");
        if r.name.is_empty() {
            return Err(invalid(key("name"), "must not be empty"));
        }
        let route = self.checked_route(i, r)?;
        let glob = |field: &str, pattern: &Option<String>| -> Result<_, ConfigError> {
            pattern
                .as_deref()
                .map(|p| {
                    Glob::new(p)
                        .map(|g| g.compile_matcher())
                        .map_err(|e| invalid(key(field), format!("bad glob {p:?}: {e}")))
                })
                .transpose()
        };
        let client_addr = r
            .client_addr
            .as_deref()
            .map(|a| {
                parse_cidr(a).ok_or_else(|| {
                    invalid(
                        key("client_addr"),
                        format!("{a:?} is not an address or CIDR"),
                    )
                })
            })
            .transpose()?;
        let query = r
            .query
            .as_deref()
            .map(|q| {
                Regex::new(q)
                    .map_err(|e| invalid(key("query"), format!("bad regular expression: {e}")))
            })
            .transpose()?;
        let tables = if r.tables.is_empty() {
            None
        } else {
            Some(table_matcher(&r.tables).map_err(|e| invalid(key("tables"), e))?)
        };
        Ok(Rule {
            name: r.name.as_str().into(),
            user: glob("user", &r.user)?,
            database: glob("database", &r.database)?,
            application_name: glob("application_name", &r.application_name)?,
            client_addr,
            query,
            tables,
            kind: r.kind,
            route,
        })
    }

    /// A rule's route, refused where it could send writes to replicas.
    fn checked_route(&self, i: usize, r: &RuleConfig) -> Result<RuleRoute, ConfigError> {
        let key = |field: &str| format!("rules[{i}].{field}");
        let route = self
            .parse_route(&r.route, r.message.as_deref())
            .map_err(|why| invalid(key("route"), format!("rule {:?}: {why}", r.name)))?;
        if r.message.is_some() && !matches!(route, RuleRoute::Block(_)) {
            return Err(invalid(
                key("message"),
                format!(
                    "rule {:?}: only a rule with route = \"block\" has a message",
                    r.name
                ),
            ));
        }
        if route.reads_only() {
            if let Some(kind @ (RuleKind::Write | RuleKind::Ddl | RuleKind::Transaction)) = r.kind {
                return Err(invalid(
                    key("route"),
                    format!(
                        "rule {:?} matches only {} statements, which must run on the primary: \
                         it cannot route them to replicas",
                        r.name,
                        kind.as_str()
                    ),
                ));
            }
        }
        Ok(route)
    }

    /// Parses a `route` (a rule's, or a hint's without `block`).
    pub fn parse_route(&self, route: &str, message: Option<&str>) -> Result<RuleRoute, String> {
        match route {
            "primary" => Ok(RuleRoute::Primary),
            "replica" => Ok(RuleRoute::Replica),
            "block" => Ok(RuleRoute::Block(
                message
                    .unwrap_or("statement blocked by a pgroute rule")
                    .into(),
            )),
            other => match other.strip_prefix("group:") {
                Some(name) => self
                    .group(name)
                    .map(RuleRoute::Group)
                    .ok_or_else(|| format!("no group {name:?} in [groups]")),
                None => Err(format!(
                    "{other:?} is not \"primary\", \"replica\", \"group:<name>\" or \"block\""
                )),
            },
        }
    }

    pub fn group(&self, name: &str) -> Option<GroupId> {
        self.groups
            .iter()
            .position(|g| &*g.name == name)
            .map(|i| GroupId(i as u8))
    }

    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        self.rules.get(usize::from(id.0))
    }

    /// The rules a session may match, by its session matchers.
    pub fn session_candidates(&self, s: &SessionInfo, into: &mut Vec<RuleId>) {
        into.clear();
        into.extend(
            self.rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.matches_session(s))
                .map(|(i, _)| RuleId(i as u16)),
        );
    }

    /// The first candidate rule that applies to the statement. Rules that route to replicas
    /// do not apply to a statement that must run on the primary: the next rule is looked at.
    pub fn first_match(&self, candidates: &[RuleId], st: &StatementInfo) -> Option<RuleId> {
        let write = st.class.target == Target::Write;
        candidates.iter().copied().find(|id| {
            self.rule(*id)
                .is_some_and(|r| !(write && r.route.reads_only()) && r.matches_statement(st))
        })
    }

    /// The outcome of a matched rule.
    pub fn outcome(&self, id: Option<RuleId>) -> RuleOutcome {
        let Some((id, rule)) = id.and_then(|id| Some((id, self.rule(id)?))) else {
            return RuleOutcome::Steer(Steer::Default);
        };
        let by = By::Rule(id);
        RuleOutcome::Steer(match &rule.route {
            RuleRoute::Primary => Steer::Primary(by),
            RuleRoute::Replica => Steer::Replica(by),
            RuleRoute::Group(g) => Steer::Group(*g, by),
            RuleRoute::Block(_) => return RuleOutcome::Block(id),
        })
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A group name fit for hints: 1 to 63 of `[A-Za-z0-9_-]`.
pub fn valid_group_name(name: &str) -> bool {
    (1..=MAX_GROUP_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `10.1.0.0/16`, `::1/128`, or a single address.
fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| match net {
            IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() => net,
            other => other.trunc(),
        })
}

fn table_matcher(patterns: &[String]) -> Result<TableMatcher, String> {
    let mut matcher = TableMatcher {
        bare: Vec::new(),
        qualified: Vec::new(),
    };
    for p in patterns {
        let pattern = TablePattern::new(p)?;
        if p.contains('.') {
            matcher.qualified.push(pattern);
        } else {
            matcher.bare.push(pattern);
        }
    }
    Ok(matcher)
}

#[cfg(test)]
mod tests;
