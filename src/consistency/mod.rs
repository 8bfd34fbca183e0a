//! Read-your-writes: what a session's next read requires of a replica.
//!
//! In `lsn` mode, after a session's write commits on the primary, pgroute reads the primary's
//! WAL insert position on that same connection (pipelined behind the client's statement, so the
//! client's reply is not delayed) and records it as the session's required LSN. A read may go to
//! a replica only if the monitor has seen that replica's replay position at or past it.
//!
//! Why this is safe: the insert position read after COMMIT returned is at or past the end of the
//! commit record, so a replica that has replayed up to it has applied the commit. The monitor
//! keeps, per replica, the highest replay position it has observed, and a replica's replay
//! position never moves backwards while it stays a replica, so the known value is always a lower
//! bound of the replica's real one: a read that passes the check cannot miss the write.
//!
//! What it does not promise: reads see the session's own writes and anything it was told about
//! (a token handed over with `pgroute.min_lsn`), not every other session's latest writes — that
//! is the replicas' ordinary lag.

use std::time::{Duration, Instant};

use crate::backend::view::Lsn;
use crate::config::RywMode;

/// Per-statement hints from a leading comment: `/* pgroute.min_lsn=0/16B3748 */`,
/// `/* pgroute.max_lag=200ms */`, `/* pgroute.route=group:analytics */`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    pub min_lsn: Option<Lsn>,
    pub max_lag: Option<Duration>,
    pub route: Option<RouteHint>,
    /// A `pgroute.*` hint could not be read (it is ignored; the client gets a notice).
    pub malformed: bool,
}

/// Where a hint (`pgroute.route`) asks reads to go. It never moves a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteHint {
    Primary,
    Replica,
    Group(GroupName),
}

impl RouteHint {
    /// `primary`, `replica` or `group:<name>`.
    pub fn parse(text: &str) -> Option<RouteHint> {
        match text {
            "primary" => Some(RouteHint::Primary),
            "replica" => Some(RouteHint::Replica),
            _ => GroupName::new(text.strip_prefix("group:")?).map(RouteHint::Group),
        }
    }
}

impl std::fmt::Display for RouteHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteHint::Primary => f.write_str("primary"),
            RouteHint::Replica => f.write_str("replica"),
            RouteHint::Group(g) => write!(f, "group:{}", g.as_str()),
        }
    }
}

/// A group name held inline (hints are copied per unit without allocating).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GroupName {
    len: u8,
    bytes: [u8; crate::router::rules::MAX_GROUP_NAME],
}

impl GroupName {
    /// None unless `name` is a valid group name (see [`crate::router::rules::valid_group_name`]).
    pub fn new(name: &str) -> Option<GroupName> {
        if !crate::router::rules::valid_group_name(name) {
            return None;
        }
        let mut bytes = [0; crate::router::rules::MAX_GROUP_NAME];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(GroupName {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for GroupName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Reads the hints in the comments that open `sql`. Cheap when there are none.
pub fn parse_hints(sql: &str) -> Hints {
    let mut hints = Hints::default();
    let mut rest = sql.trim_start();
    while let Some(body) = rest.strip_prefix("/*") {
        let Some(end) = body.find("*/") else { break };
        for item in body[..end].split([' ', ',', '\n', '\t']) {
            if let Some((key, value)) = item.split_once('=') {
                let key = key.trim();
                let bad = apply_setting(&mut hints, key, value.trim()).is_err();
                hints.malformed |= bad && is_own(key);
            }
        }
        rest = body[end + 2..].trim_start();
    }
    hints
}

/// A `pgroute.*` setting or hint that cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    #[error("invalid LSN {0:?}")]
    Lsn(String),
    #[error("invalid duration {value:?}: {source}")]
    Duration {
        value: String,
        source: humantime::DurationError,
    },
    #[error("unrecognized configuration parameter \"{0}\"")]
    Unknown(String),
    #[error("invalid route {0:?}: expected \"primary\", \"replica\" or \"group:<name>\"")]
    Route(String),
}

/// A `pgroute.` name (case-insensitive).
fn is_own(key: &str) -> bool {
    key.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("pgroute."))
}

fn parse_lsn(value: &str) -> Result<Lsn, SettingError> {
    Lsn::parse(value).ok_or_else(|| SettingError::Lsn(value.to_owned()))
}

/// Applies `pgroute.min_lsn` / `pgroute.max_lag` (value without SQL quotes).
fn apply_setting(hints: &mut Hints, name: &str, value: &str) -> Result<(), SettingError> {
    match name.to_ascii_lowercase().as_str() {
        "pgroute.min_lsn" => hints.min_lsn = Some(parse_lsn(value)?),
        "pgroute.max_lag" => {
            let d = humantime::parse_duration(value).map_err(|source| SettingError::Duration {
                value: value.to_owned(),
                source,
            })?;
            hints.max_lag = Some(d);
        }
        "pgroute.route" => {
            let route =
                RouteHint::parse(value).ok_or_else(|| SettingError::Route(value.to_owned()))?;
            hints.route = Some(route);
        }
        _ => return Err(SettingError::Unknown(name.to_owned())),
    }
    Ok(())
}

/// Where a read may go, as far as consistency is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Only the primary is fresh enough (`time` or `session` mode after a write).
    Primary,
    /// A replica whose known replay LSN ≥ `min_lsn` and whose time lag ≤ `max_lag` may serve.
    Replica {
        min_lsn: Lsn,
        max_lag: Option<Duration>,
    },
}

/// One session's consistency state.
#[derive(Debug, Clone)]
pub struct Session {
    mode: RywMode,
    stick_for: Duration,
    /// LSN the session's reads must see (its writes, and tokens it was given).
    min_lsn: Lsn,
    /// Session-wide settings from `SET pgroute.*` / startup parameters.
    settings: Hints,
    stick_until: Option<Instant>,
    wrote: bool,
}

impl Session {
    pub fn new(mode: RywMode, stick_for: Duration) -> Self {
        Session {
            mode,
            stick_for,
            min_lsn: Lsn::ZERO,
            settings: Hints::default(),
            stick_until: None,
            wrote: false,
        }
    }

    pub fn mode(&self) -> RywMode {
        self.mode
    }

    /// A write of this session committed.
    pub fn on_commit(&mut self, now: Instant) {
        self.wrote = true;
        self.stick_until = Some(now + self.stick_for);
    }

    /// The primary's insert LSN after the session's last commit. Returns the new token.
    pub fn on_lsn(&mut self, lsn: Lsn) -> Lsn {
        self.min_lsn = self.min_lsn.max(lsn);
        self.min_lsn
    }

    /// `SET pgroute.min_lsn = '…'` / `SET pgroute.max_lag = '…'` (value as SQL text).
    pub fn set(&mut self, name: &str, sql_value: &str) -> Result<(), SettingError> {
        let value = unquote(sql_value);
        if name.eq_ignore_ascii_case("pgroute.min_lsn") {
            let lsn = parse_lsn(&value)?;
            self.min_lsn = self.min_lsn.max(lsn);
            return Ok(());
        }
        apply_setting(&mut self.settings, name, &value)
    }

    pub fn reset(&mut self, name: &str) {
        if name.eq_ignore_ascii_case("pgroute.max_lag") {
            self.settings.max_lag = None;
        } else if name.eq_ignore_ascii_case("pgroute.route") {
            self.settings.route = None;
        }
    }

    /// `SET pgroute.route`: where the session's reads go unless a statement hint says otherwise.
    pub fn route(&self) -> Option<RouteHint> {
        self.settings.route
    }

    /// `SHOW pgroute.*`.
    pub fn show(&self, name: &str) -> Option<String> {
        match name.to_ascii_lowercase().as_str() {
            "pgroute.lsn" | "pgroute.min_lsn" => Some(self.min_lsn.to_string()),
            "pgroute.max_lag" => Some(
                self.settings
                    .max_lag
                    .map(|d| humantime::format_duration(d).to_string())
                    .unwrap_or_default(),
            ),
            "pgroute.route" => Some(
                self.settings
                    .route
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }

    pub fn token(&self) -> Lsn {
        self.min_lsn
    }

    /// What the next read requires, given the statement's own hints.
    pub fn read_policy(&self, hints: &Hints, now: Instant) -> ReadPolicy {
        let max_lag = hints.max_lag.or(self.settings.max_lag);
        let token = hints.min_lsn.unwrap_or_default().max(self.min_lsn);
        let min_lsn = match self.mode {
            RywMode::Lsn => token,
            RywMode::Time if self.stick_until.is_some_and(|t| now < t) => {
                return ReadPolicy::Primary
            }
            RywMode::Session if self.wrote => return ReadPolicy::Primary,
            // Tokens handed over explicitly are honoured in every mode.
            _ => hints.min_lsn.unwrap_or_default(),
        };
        ReadPolicy::Replica { min_lsn, max_lag }
    }
}

/// `'0/16B3748'` → `0/16B3748`.
fn unquote(sql: &str) -> String {
    let s = sql.trim();
    match s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_read_from_leading_comments_only() {
        let h = parse_hints("/* pgroute.min_lsn=0/16B3748 */ SELECT 1");
        assert_eq!(h.min_lsn, Some(Lsn(0x16B3748)));
        let h = parse_hints("/* app=x */ /* pgroute.max_lag=200ms */\nSELECT 1");
        assert_eq!(h.max_lag, Some(Duration::from_millis(200)));
        assert_eq!(
            parse_hints("SELECT 1 /* pgroute.min_lsn=0/1 */"),
            Hints::default()
        );
        assert_eq!(
            parse_hints("/* pgroute.min_lsn=garbage */ SELECT 1"),
            Hints {
                malformed: true,
                ..Hints::default()
            }
        );
        assert_eq!(parse_hints("/* unterminated"), Hints::default());
    }

    #[test]
    fn route_hints_and_malformed_ones() {
        let route = |sql| parse_hints(sql).route;
        assert_eq!(
            route("/* pgroute.route=primary */ SELECT 1"),
            Some(RouteHint::Primary)
        );
        assert_eq!(
            route("/* pgroute.route=replica */ SELECT 1"),
            Some(RouteHint::Replica)
        );
        assert_eq!(
            route("/* x=1, PGROUTE.ROUTE=group:analytics */ SELECT 1"),
            Some(RouteHint::Group(GroupName::new("analytics").unwrap()))
        );
        for bad in [
            "/* pgroute.route=sideways */ SELECT 1",
            "/* pgroute.route=group: */ SELECT 1",
            "/* pgroute.route=group:has.dot */ SELECT 1",
            "/* pgroute.bogus=1 */ SELECT 1",
        ] {
            let h = parse_hints(bad);
            assert_eq!((h.route, h.malformed), (None, true), "{bad}");
        }
        // Other people's key=value comments are not pgroute's concern.
        assert!(!parse_hints("/* app=x, route=y */ SELECT 1").malformed);
        let long = format!("/* pgroute.route=group:{} */", "g".repeat(64));
        assert!(parse_hints(&long).malformed);
    }

    #[test]
    fn set_pgroute_route_lasts_until_reset() {
        let mut s = Session::new(RywMode::Lsn, Duration::from_secs(1));
        s.set("pgroute.route", "'group:analytics'").unwrap();
        assert_eq!(s.show("pgroute.route").as_deref(), Some("group:analytics"));
        assert!(matches!(s.route(), Some(RouteHint::Group(_))));
        assert!(s.set("pgroute.route", "'nowhere'").is_err());
        assert!(
            matches!(s.route(), Some(RouteHint::Group(_))),
            "a bad SET changes nothing"
        );
        s.reset("pgroute.route");
        assert_eq!(s.route(), None);
        assert_eq!(s.show("pgroute.route").as_deref(), Some(""));
    }

    #[test]
    fn lsn_mode_requires_the_highest_of_writes_tokens_and_hints() {
        let now = Instant::now();
        let mut s = Session::new(RywMode::Lsn, Duration::from_secs(1));
        assert_eq!(
            s.read_policy(&Hints::default(), now),
            ReadPolicy::Replica {
                min_lsn: Lsn::ZERO,
                max_lag: None
            }
        );
        s.on_lsn(Lsn(100));
        s.on_lsn(Lsn(50)); // never goes back
        assert_eq!(s.token(), Lsn(100));
        s.set("pgroute.min_lsn", "'0/C8'").unwrap(); // 200
        let hint = Hints {
            min_lsn: Some(Lsn(150)),
            max_lag: Some(Duration::from_millis(5)),
            ..Hints::default()
        };
        assert_eq!(
            s.read_policy(&hint, now),
            ReadPolicy::Replica {
                min_lsn: Lsn(200),
                max_lag: Some(Duration::from_millis(5))
            }
        );
        assert!(s.set("pgroute.min_lsn", "'nope'").is_err());
        assert!(s.set("pgroute.bogus", "'1'").is_err());
        assert_eq!(s.show("pgroute.lsn").as_deref(), Some("0/C8"));
    }

    #[test]
    fn time_mode_sticks_to_the_primary_for_a_while_after_a_write() {
        let now = Instant::now();
        let mut s = Session::new(RywMode::Time, Duration::from_secs(1));
        s.on_commit(now);
        assert_eq!(s.read_policy(&Hints::default(), now), ReadPolicy::Primary);
        let later = now + Duration::from_secs(2);
        assert!(matches!(
            s.read_policy(&Hints::default(), later),
            ReadPolicy::Replica { .. }
        ));
    }

    #[test]
    fn session_mode_sticks_forever_and_off_mode_never() {
        let now = Instant::now();
        let mut s = Session::new(RywMode::Session, Duration::ZERO);
        s.on_commit(now);
        assert_eq!(
            s.read_policy(&Hints::default(), now + Duration::from_secs(999)),
            ReadPolicy::Primary
        );
        let mut off = Session::new(RywMode::Off, Duration::ZERO);
        off.on_commit(now);
        off.on_lsn(Lsn(500));
        assert_eq!(
            off.read_policy(&Hints::default(), now),
            ReadPolicy::Replica {
                min_lsn: Lsn::ZERO,
                max_lag: None
            }
        );
    }
}
