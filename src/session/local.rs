//! Statements pgroute answers itself: `SET`/`RESET`/`SHOW` of its own `pgroute.*` settings
//! (the read-your-writes token and staleness budget), sent as simple queries.

use bytes::{BufMut, BytesMut};

use super::extended::{ExtMsg, StmtRef};
use super::params::is_pgroute;
use super::state::TxnStatus;
use super::Session;
use crate::classify::{Classification, ParamChange};
use crate::consistency;
use crate::error::Error;
use crate::protocol::messages;
use crate::protocol::Body;

/// `SHOW pgroute.x`, if that is the whole statement.
fn show_target(sql: &str) -> Option<&str> {
    let s = sql.trim().trim_end_matches(';').trim();
    let rest = s.get(..5).filter(|k| k.eq_ignore_ascii_case("show "))?;
    let name = s[rest.len()..].trim();
    (is_pgroute(name) && !name.contains(char::is_whitespace)).then_some(name)
}

/// Whether every statement of `sql` is pgroute's own.
pub fn answers(sql: &str, class: &Classification) -> bool {
    if show_target(sql).is_some() {
        return true;
    }
    class.statements > 0
        && class.params.len() == class.statements
        && class.params.iter().all(|p| match p {
            ParamChange::Set { name, .. } | ParamChange::Reset { name } => is_pgroute(name),
            ParamChange::ResetAll => false,
        })
}

impl Session {
    /// `DEALLOCATE name` of a statement the client prepared with the extended protocol: on the
    /// servers it has pgroute's name, so the session forgets it here (PostgreSQL's semantics:
    /// the name is free again at once, even inside a transaction). In a failed transaction the
    /// server is asked, so the client gets PostgreSQL's own 25P02.
    pub(super) fn deallocates_own(&self, class: &Classification) -> bool {
        class
            .deallocate
            .as_deref()
            .is_some_and(|name| !name.is_empty() && self.statements.contains_key(name))
            && self.state.txn != TxnStatus::Failed
    }
}

/// Replies to a statement [`answers`] or [`Session::deallocates_own`] accepted.
pub fn answer(session: &mut Session, sql: &str, class: &Classification) {
    let mut out = std::mem::take(session.client.out());
    reply(session, sql, class, &mut out);
    messages::ready_for_query(&mut out, session.state.txn.byte());
    *session.client.out() = out;
}

/// What [`answer`] replies, without its ReadyForQuery, applying what the statement sets.
pub fn reply(session: &mut Session, sql: &str, class: &Classification, out: &mut BytesMut) {
    if let Some(name) = class.deallocate.as_deref() {
        session.statements.remove(name);
        messages::command_complete(out, "DEALLOCATE");
        return;
    }
    if show_target(sql).is_some_and(|n| n.eq_ignore_ascii_case("pgroute.nodes")) {
        return reply_nodes(session, out);
    }
    if let Some(name) = show_target(sql) {
        match session.show_value(name) {
            Some(value) => {
                row_description(out, &[name]);
                data_row(out, &[&value]);
                messages::command_complete(out, "SHOW");
            }
            None => {
                let e = Error::UnknownSetting(name.to_owned());
                session.proxy.metrics.error_sent(&e);
                e.write_response(out);
            }
        }
        return;
    }
    for change in &class.params {
        let result = match change {
            ParamChange::Set { name, value } => session.ryw.set(name, value),
            ParamChange::Reset { name } => {
                session.ryw.reset(name);
                Ok(())
            }
            ParamChange::ResetAll => Ok(()),
        };
        if let Err(e) = result {
            let e = Error::from(e);
            session.proxy.metrics.error_sent(&e);
            e.write_response(out);
            break;
        }
        let tag = if matches!(change, ParamChange::Reset { .. }) {
            "RESET"
        } else {
            "SET"
        };
        messages::command_complete(out, tag);
    }
}

/// `SHOW pgroute.nodes`: one row per node.
fn reply_nodes(session: &mut Session, out: &mut BytesMut) {
    let rows = node_rows(session);
    row_description(out, &NODE_COLUMNS);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        data_row(out, &cells);
    }
    messages::command_complete(out, &format!("SELECT {}", rows.len()));
}

/// `SHOW pgroute.last_route`: the node the session's last unit went to and the router's reason
/// (`pg2 (replica): replica`, `pg1 (primary): write`); empty before the first.
fn last_route(session: &Session) -> String {
    let Some(last) = &session.last_route else {
        return String::new();
    };
    let (route, reason) = (last.route, last.reason);
    let role = match route {
        crate::router::Route::Primary(_) => "primary",
        crate::router::Route::Replica(_) => "replica",
    };
    let node = session.proxy.cluster.node(route.node());
    let name = node.as_ref().map_or("?", |n| n.name.as_str());
    match &last.by {
        Some(by) if &**by == "hint" => format!("{name} ({role}): {reason} (hint)"),
        Some(rule) => format!("{name} ({role}): {reason} (rule {rule})"),
        None => format!("{name} ({role}): {reason}"),
    }
}

/// Applies `pgroute.*` changes that reached a server inside a larger statement or through the
/// extended protocol (the server accepts them as placeholder settings).
pub fn apply_own_settings(ryw: &mut consistency::Session, changes: &[ParamChange]) {
    for change in changes {
        match change {
            ParamChange::Set { name, value } if is_pgroute(name) => {
                if let Err(e) = ryw.set(name, value) {
                    tracing::debug!(error = %e, "ignored pgroute setting");
                }
            }
            ParamChange::Reset { name } if is_pgroute(name) => ryw.reset(name),
            _ => {}
        }
    }
}

/// The `SHOW pgroute.*` a prepared statement's text is, if it is one (not `pgroute.nodes`).
fn show_of(after_name: &[u8]) -> Option<String> {
    // On every extended batch: most statements are rejected by their first word, before the
    // text is scanned for its end.
    let start = after_name.iter().position(|b| !b.is_ascii_whitespace())?;
    let word = after_name.get(start..start + 5)?;
    if !word.eq_ignore_ascii_case(b"show ") {
        return None;
    }
    let end = after_name.iter().position(|b| *b == 0)?;
    let sql = std::str::from_utf8(&after_name[..end]).ok()?;
    let name = show_target(sql)?;
    (!name.eq_ignore_ascii_case("pgroute.nodes")).then(|| name.to_owned())
}

impl Session {
    /// The value of `SHOW name` for this session (None: no such setting).
    fn show_value(&self, name: &str) -> Option<String> {
        if name.eq_ignore_ascii_case("pgroute.last_route") {
            Some(last_route(self))
        } else {
            self.ryw.show(name)
        }
    }

    /// The SHOW a message of the batch refers to: Some(None) for messages that refer to no
    /// statement (Sync, Flush, portal Describe/Close), None when it is not pgroute's own.
    fn local_show(msg: &ExtMsg) -> Option<Option<String>> {
        match msg {
            ExtMsg::ParseNamed { stmt, .. } => show_of(&stmt.after_name).map(Some),
            ExtMsg::ParseUnnamed { frame, .. } => {
                let mut body = Body::of_frame(frame);
                body.cstr("Parse").ok()?;
                show_of(body.rest()).map(Some)
            }
            ExtMsg::Bind { stmt, .. } | ExtMsg::DescribeStmt { stmt, .. } => match stmt {
                StmtRef::Named(s) => show_of(&s.after_name).map(Some),
                StmtRef::Unnamed(Some(u)) => show_of(&u.after_name).map(Some),
                _ => None,
            },
            ExtMsg::Execute { .. } | ExtMsg::CloseNamed { .. } => Some(None),
            ExtMsg::Forward { frame, .. } => match frame.first() {
                Some(b'S' | b'H' | b'D' | b'C') => Some(None),
                _ => None,
            },
            ExtMsg::ParseDuplicate { .. } => None,
        }
    }

    /// The SHOW a batch made only of pgroute's own `SHOW pgroute.*` asks for.
    pub(super) fn local_batch_name(&self) -> Option<String> {
        let mut name = None;
        for msg in &self.batch.msgs {
            if let Some(n) = Self::local_show(msg)? {
                name = Some(n);
            }
        }
        name
    }

    /// A batch made only of pgroute's own `SHOW pgroute.*` (Parse, Bind, Describe, Execute,
    /// Sync of it, as drivers that prepare every statement send): answered here, as the server
    /// answers a SHOW. Returns false when the batch is not one.
    pub(super) fn answer_local_batch(&mut self, name: &str) {
        let batch = std::mem::take(&mut self.batch);
        let value = self.show_value(name);
        let txn = self.state.txn.byte();
        let mut failed = false;
        for msg in &batch.msgs {
            let out = self.client.out();
            let tag = match msg {
                ExtMsg::Forward { frame, .. } => frame.first().copied().unwrap_or(0),
                _ => 0,
            };
            if failed && tag != b'S' {
                continue;
            }
            match msg {
                ExtMsg::ParseNamed { .. } | ExtMsg::ParseUnnamed { .. } => {
                    out.extend_from_slice(&messages::empty(b'1'))
                }
                ExtMsg::Bind { .. } => out.extend_from_slice(&messages::empty(b'2')),
                ExtMsg::CloseNamed { .. } => out.extend_from_slice(&messages::empty(b'3')),
                ExtMsg::DescribeStmt { .. } => {
                    out.extend_from_slice(&[b't', 0, 0, 0, 6, 0, 0]);
                    row_description(out, &[name]);
                }
                ExtMsg::Execute { .. } => match &value {
                    Some(v) => {
                        data_row(out, &[v]);
                        messages::command_complete(out, "SHOW");
                    }
                    None => {
                        let e = Error::UnknownSetting(name.to_owned());
                        self.proxy.metrics.error_sent(&e);
                        e.write_response(out);
                        failed = true;
                    }
                },
                ExtMsg::Forward { .. } => match tag {
                    b'S' => {
                        failed = false;
                        messages::ready_for_query(out, txn);
                    }
                    b'D' => row_description(out, &[name]),
                    b'C' => out.extend_from_slice(&messages::empty(b'3')),
                    _ => {}
                },
                ExtMsg::ParseDuplicate { .. } => {}
            }
        }
        // The server's unnamed statement is no longer the session's.
        self.unnamed_on_held = false;
    }
}

/// Columns of `SHOW pgroute.nodes`.
const NODE_COLUMNS: [&str; 10] = [
    "node",
    "addr",
    "role",
    "reachable",
    "replay_lsn",
    "lag_bytes",
    "lag_ms",
    "takes_reads",
    "outstanding",
    "timeline",
];

/// The monitor's view of every node, one row each (all text).
fn node_rows(session: &Session) -> Vec<Vec<String>> {
    let cluster = &session.proxy.cluster;
    let view = cluster.view();
    let members = cluster.members();
    members
        .nodes
        .iter()
        .zip(view.nodes.iter())
        .filter(|(node, _)| !node.removed())
        .map(|(node, nv)| {
            let role = match nv.in_recovery {
                _ if nv.fenced() => "fenced",
                Some(true) => "replica",
                Some(false) => "primary",
                None => "unknown",
            };
            vec![
                node.name.clone(),
                node.addr.to_string(),
                role.to_owned(),
                nv.reachable.to_string(),
                nv.replay_lsn.map(|l| l.to_string()).unwrap_or_default(),
                nv.lag_bytes.to_string(),
                nv.lag_time.as_millis().to_string(),
                nv.takes_reads().to_string(),
                node.outstanding().to_string(),
                nv.timeline.map(|t| t.to_string()).unwrap_or_default(),
            ]
        })
        .collect()
}

/// A RowDescription of text columns.
fn row_description(out: &mut bytes::BytesMut, columns: &[&str]) {
    let len = 4 + 2 + columns.iter().map(|c| c.len() + 1 + 18).sum::<usize>();
    out.put_u8(b'T');
    out.put_i32(len as i32);
    out.put_i16(columns.len() as i16);
    for column in columns {
        out.put_slice(column.as_bytes());
        out.put_u8(0);
        out.put_i32(0); // table oid
        out.put_i16(0); // column number
        out.put_i32(25); // text
        out.put_i16(-1); // variable length
        out.put_i32(-1); // no type modifier
        out.put_i16(0); // text format
    }
}

fn data_row(out: &mut bytes::BytesMut, values: &[&str]) {
    let len = 4 + 2 + values.iter().map(|v| 4 + v.len()).sum::<usize>();
    out.put_u8(b'D');
    out.put_i32(len as i32);
    out.put_i16(values.len() as i16);
    for value in values {
        out.put_i32(value.len() as i32);
        out.put_slice(value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    #[test]
    fn only_pgroute_settings_are_answered_locally() {
        let yes = [
            "SHOW pgroute.lsn",
            "show pgroute.lsn;",
            "SET pgroute.min_lsn = '0/1'",
            "SET pgroute.max_lag = '200ms'; RESET pgroute.max_lag",
        ];
        for sql in yes {
            assert!(answers(sql, &classify(sql)), "{sql}");
        }
        let no = [
            "SHOW work_mem",
            "SET work_mem = '1MB'",
            "SET pgroute.min_lsn = '0/1'; SELECT 1",
            "SELECT 'show pgroute.lsn'",
            "RESET ALL",
        ];
        for sql in no {
            assert!(!answers(sql, &classify(sql)), "{sql}");
        }
    }
}
