//! Routing rules and `pgroute.route` hints for a session's units of work: which rule (or hint)
//! steers a unit, or the `block` rule that stops it.
//!
//! The rules a session can match by who it is (user, database, address, application) are
//! found once, and again only when its `application_name` changes or a reload installs other
//! rules; per unit only those rules' statement matchers run. With no rules and no hint nothing
//! is computed at all.

use std::net::IpAddr;
use std::sync::Arc;

use super::extended::{ExtMsg, StmtRef};
use crate::classify::Classification;
use crate::consistency::{Hints, RouteHint};
use crate::router::rules::{By, RuleId, RuleOutcome, RuleSet, SessionInfo, StatementInfo, Steer};

/// Who the session is, for rule matchers, and the rules that can match it.
#[derive(Debug, Default)]
pub(super) struct SessionRules {
    pub(super) user: String,
    pub(super) database: String,
    pub(super) client_addr: Option<IpAddr>,
    /// The rule set `ids` was computed for (compared by address; kept so it cannot be reused).
    of: Option<Arc<RuleSet>>,
    /// The `application_name` it was computed for.
    app: String,
    ids: Vec<RuleId>,
}

impl SessionRules {
    pub(super) fn new(user: &str, database: &str, client_addr: Option<IpAddr>) -> Self {
        SessionRules {
            user: user.to_owned(),
            database: database.to_owned(),
            client_addr,
            ..SessionRules::default()
        }
    }

    /// The rules this session can match under `rules`, recomputed if needed.
    fn candidates(&mut self, rules: &Arc<RuleSet>, app: &str) -> &[RuleId] {
        let fresh = self.of.as_ref().is_some_and(|of| Arc::ptr_eq(of, rules)) && self.app == app;
        if !fresh {
            let info = SessionInfo {
                user: &self.user,
                database: &self.database,
                application_name: app,
                client_addr: self.client_addr,
            };
            rules.session_candidates(&info, &mut self.ids);
            self.of = Some(rules.clone());
            app.clone_into(&mut self.app);
        }
        &self.ids
    }
}

/// The statement text in a Parse body after its name (up to the NUL), if readable.
fn text_of(after_name: &[u8]) -> &str {
    let end = after_name
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(after_name.len());
    std::str::from_utf8(&after_name[..end]).unwrap_or_default()
}

/// What the rules need from a session, borrowed field by field (the statement text may be
/// borrowed from the client's buffer meanwhile).
pub(super) struct Ctx<'a> {
    pub(super) rules: &'a mut SessionRules,
    pub(super) app: &'a str,
    pub(super) in_transaction: bool,
    /// `SET pgroute.route`.
    pub(super) session_route: Option<RouteHint>,
}

impl Ctx<'_> {
    /// The rule outcome for a simple Query.
    pub(super) fn query(
        &mut self,
        rules: &Arc<RuleSet>,
        class: &Classification,
        text: &str,
        hints: &Hints,
    ) -> RuleOutcome {
        let hint = hints.route.or(self.session_route);
        if rules.rules.is_empty() && hint.is_none() {
            return RuleOutcome::Steer(Steer::Default);
        }
        let matched = self.first_rule(rules, class, text);
        combine(rules, matched, hint)
    }

    /// The rule outcome for an extended batch: a block if any statement it binds is blocked,
    /// else where its first bound statement is steered.
    pub(super) fn batch(
        &mut self,
        rules: &Arc<RuleSet>,
        msgs: &[ExtMsg],
        hints: &Hints,
    ) -> RuleOutcome {
        let hint = hints.route.or(self.session_route);
        if rules.rules.is_empty() && hint.is_none() {
            return RuleOutcome::Steer(Steer::Default);
        }
        let mut first: Option<RuleOutcome> = None;
        // The statements the batch binds decide; a batch that binds none (Parse, Describe) is
        // steered by those it prepares or describes, so that it lands where its execution will.
        for binds in [true, false] {
            for msg in msgs {
                let stmt = match msg {
                    ExtMsg::Bind { stmt, .. } if binds => stmt,
                    ExtMsg::DescribeStmt { stmt, .. } if !binds => stmt,
                    _ => continue,
                };
                let (class, after_name) = match stmt {
                    StmtRef::Named(s) => (&s.class, &s.after_name),
                    StmtRef::Unnamed(Some(u)) => (&u.class, &u.after_name),
                    _ => continue,
                };
                let matched = self.first_rule(rules, class, text_of(after_name));
                let outcome = combine(rules, matched, hint);
                if let RuleOutcome::Block(_) = outcome {
                    return outcome;
                }
                first.get_or_insert(outcome);
            }
            if first.is_some() {
                break;
            }
        }
        if first.is_none() {
            for msg in msgs {
                if let ExtMsg::ParseNamed { stmt, .. } = msg {
                    let matched = self.first_rule(rules, &stmt.class, text_of(&stmt.after_name));
                    if let outcome @ RuleOutcome::Steer(_) = combine(rules, matched, hint) {
                        first = Some(outcome);
                        break;
                    }
                }
            }
        }
        first.unwrap_or_else(|| combine(rules, None, hint))
    }

    fn first_rule(
        &mut self,
        rules: &Arc<RuleSet>,
        class: &Classification,
        text: &str,
    ) -> Option<RuleId> {
        if rules.rules.is_empty() {
            return None;
        }
        let st = StatementInfo {
            class,
            text,
            in_transaction: self.in_transaction,
        };
        let ids = self.rules.candidates(rules, self.app);
        rules.first_match(ids, &st)
    }
}

/// A block rule stops the unit whatever the hints say; otherwise a hint steers it before any
/// rule does. A hint naming a group that does not exist is ignored.
fn combine(rules: &RuleSet, matched: Option<RuleId>, hint: Option<RouteHint>) -> RuleOutcome {
    let outcome = rules.outcome(matched);
    if let RuleOutcome::Block(_) = outcome {
        return outcome;
    }
    let steer = match hint {
        Some(RouteHint::Primary) => Steer::Primary(By::Hint),
        Some(RouteHint::Replica) => Steer::Replica(By::Hint),
        Some(RouteHint::Group(name)) => match rules.group(name.as_str()) {
            Some(g) => Steer::Group(g, By::Hint),
            None => return outcome,
        },
        None => return outcome,
    };
    RuleOutcome::Steer(steer)
}
