//! Routing rules and `pgroute.route` hints for a session's units of work: which rule (or hint)
//! steers a unit, or the `block` rule that stops it.
//!
//! The rules a session can match by who it is (user, database, address, application) are
//! found once, and again only when its `application_name` changes or a reload installs other
//! rules; per unit only those rules' statement matchers run. With no rules and no hint nothing
//! is computed at all.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;

use super::dispatch::{has_sync, Unit};
use super::extended::{ExtMsg, StmtRef};
use super::state::TxnStatus;
use super::Session;
use crate::classify::Classification;
use crate::consistency::{Hints, RouteHint};
use crate::error::Error;
use crate::protocol::messages;
use crate::router::decision::{Decision, Reason, UnitFacts};
use crate::router::rules::{By, RuleId, RuleOutcome, RuleSet, SessionInfo, StatementInfo, Steer};
use crate::router::rules::{Rule, RuleRoute};

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
    /// What the client was told, for its current `application_name` (read only when a rule
    /// is looked at).
    pub(super) reported: &'a super::reported::Reported,
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
        let app = self.reported.value("application_name").unwrap_or_default();
        let ids = self.rules.candidates(rules, app);
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

impl Session {
    /// A simple Query a `block` rule stopped. Returns false when it has to wait for replies
    /// still due (the error comes in order).
    pub(super) async fn block_query(
        &mut self,
        rule: RuleId,
        hints: Hints,
        to_server: &mut BytesMut,
    ) -> Result<bool, Error> {
        if self.held.as_ref().is_some_and(|h| !h.relay.is_idle()) {
            return Ok(false);
        }
        self.split_client()?;
        let e = self.blocked(rule);
        if self.state.txn != TxnStatus::Idle && self.held.is_some() {
            // In a transaction block the server itself fails the statement, so that the
            // transaction is aborted as PostgreSQL aborts it for a permission error.
            self.dispatch_raise(&e, hints, to_server).await;
        } else {
            self.refuse_unit(&e, true);
        }
        Ok(true)
    }

    /// An extended batch a `block` rule stopped: answered here. Returns false when it has to
    /// wait for replies still due.
    pub(super) fn block_batch(&mut self, rule: RuleId) -> bool {
        if self.held.as_ref().is_some_and(|h| !h.relay.is_idle()) {
            return false;
        }
        let batch = std::mem::take(&mut self.batch);
        let ready = has_sync(&batch.msgs);
        self.forget_batch(batch.msgs);
        let e = self.blocked(rule);
        self.refuse_unit(&e, ready);
        true
    }

    /// Sends, on the held connection, a statement that raises `e` on the server (its
    /// ErrorResponse and ReadyForQuery go to the client as for any statement).
    async fn dispatch_raise(&mut self, e: &Error, hints: Hints, to_server: &mut BytesMut) {
        let mut frame = BytesMut::new();
        messages::query(&mut frame, &raise_sql(&e.sqlstate(), &e.to_string()));
        // Unread: a write with no session effects.
        let class = self.proxy.classes.classify_text(None);
        let unit = UnitFacts::write();
        let session = self.session_facts(&hints);
        let traits = self.traits(unit, &session, false, hints);
        let decision = Decision::Held(Reason::Transaction);
        self.dispatch(Unit::Query { frame, class }, traits, decision, to_server)
            .await;
    }

    /// The error for a unit a `block` rule stopped.
    fn blocked(&self, rule: RuleId) -> Error {
        let policy = self.proxy.router.policy();
        let (name, message) = match policy.rules.rule(rule) {
            Some(Rule {
                name,
                route: RuleRoute::Block(message),
                ..
            }) => (name.to_string(), message.to_string()),
            _ => (
                String::new(),
                "statement blocked by a pgroute rule".to_owned(),
            ),
        };
        tracing::debug!(rule = name, "statement blocked");
        Error::Blocked {
            rule: name,
            message,
        }
    }

    /// A `pgroute.*` hint in a comment could not be read: it is ignored, and the client is
    /// told with a WARNING notice (notices may come at any time).
    pub(super) fn notice_malformed_hints(&mut self, hints: &Hints) {
        if hints.malformed {
            messages::notice_response(
                self.client.out(),
                "WARNING",
                "01000",
                "pgroute: ignored a malformed pgroute.* hint in the statement's comment",
            );
        }
    }

    /// A batch that is answered here without reaching a server: the statements it prepared,
    /// replaced or closed are as they were before it.
    fn forget_batch(&mut self, msgs: Vec<ExtMsg>) {
        for msg in msgs.into_iter().rev() {
            match msg {
                ExtMsg::ParseNamed { client_name, .. } => {
                    self.statements.remove(&client_name);
                }
                ExtMsg::ParseUnnamed { replaces, .. } => self.unnamed = replaces,
                ExtMsg::CloseNamed {
                    client_name,
                    closed: Some(stmt),
                } => {
                    self.statements.insert(client_name, stmt);
                }
                _ => {}
            }
        }
    }
}
/// A `DO` block raising `message` with `code`. The message is an `E''` literal with `\`, `'`
/// and `$` escaped, so nothing in it can end the literal or the dollar-quoted body.
fn raise_sql(code: &tokio_postgres::error::SqlState, message: &str) -> String {
    let mut literal = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        match c {
            '\\' => literal.push_str("\\\\"),
            '\'' => literal.push_str("\\'"),
            '$' => literal.push_str("\\x24"),
            c => literal.push(c),
        }
    }
    format!(
        "DO $pgroute$BEGIN RAISE EXCEPTION USING ERRCODE = '{}', MESSAGE = E'{literal}'; END$pgroute$",
        code.code()
    )
}

#[cfg(test)]
mod tests {
    use super::raise_sql;
    use tokio_postgres::error::SqlState;

    #[test]
    fn a_raised_message_cannot_break_out_of_its_literal() {
        let sql = raise_sql(&SqlState::INSUFFICIENT_PRIVILEGE, r"it's $pgroute$ \ x");
        assert_eq!(
            sql,
            r"DO $pgroute$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = E'it\'s \x24pgroute\x24 \\ x'; END$pgroute$"
        );
    }
}
