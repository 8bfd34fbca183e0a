//! Statements pgroute answers itself: `SET`/`RESET`/`SHOW` of its own `pgroute.*` settings
//! (the read-your-writes token and staleness budget), sent as simple queries.

use bytes::BufMut;
use tokio_postgres::error::SqlState;

use super::params::is_pgroute;
use super::Session;
use crate::classify::{Classification, ParamChange};
use crate::consistency;
use crate::protocol::messages::{self, Severity};

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

/// Replies to a statement [`answers`] accepted.
pub fn answer(session: &mut Session, sql: &str, class: &Classification) {
    let out = &mut session.out;
    if let Some(name) = show_target(sql) {
        match session.ryw.show(name) {
            Some(value) => {
                row_description(out, name);
                data_row(out, &value);
                command_complete(out, "SHOW");
            }
            None => messages::error_response(
                out,
                Severity::Error,
                &SqlState::UNDEFINED_OBJECT,
                &format!("unrecognized configuration parameter \"{name}\""),
            ),
        }
    } else {
        for change in &class.params {
            let result = match change {
                ParamChange::Set { name, value } => session.ryw.set(name, value),
                ParamChange::Reset { name } => {
                    session.ryw.reset(name);
                    Ok(())
                }
                ParamChange::ResetAll => Ok(()),
            };
            if let Err(msg) = result {
                messages::error_response(
                    out,
                    Severity::Error,
                    &SqlState::INVALID_PARAMETER_VALUE,
                    &msg,
                );
                break;
            }
            command_complete(
                out,
                if matches!(change, ParamChange::Reset { .. }) {
                    "RESET"
                } else {
                    "SET"
                },
            );
        }
    }
    messages::ready_for_query(out, session.txn);
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

fn row_description(out: &mut bytes::BytesMut, column: &str) {
    let len = 4 + 2 + column.len() + 1 + 18;
    out.put_u8(b'T');
    out.put_i32(len as i32);
    out.put_i16(1);
    out.put_slice(column.as_bytes());
    out.put_u8(0);
    out.put_i32(0); // table oid
    out.put_i16(0); // column number
    out.put_i32(25); // text
    out.put_i16(-1); // variable length
    out.put_i32(-1); // no type modifier
    out.put_i16(0); // text format
}

fn data_row(out: &mut bytes::BytesMut, value: &str) {
    out.put_u8(b'D');
    out.put_i32((4 + 2 + 4 + value.len()) as i32);
    out.put_i16(1);
    out.put_i32(value.len() as i32);
    out.put_slice(value.as_bytes());
}

fn command_complete(out: &mut bytes::BytesMut, tag: &str) {
    out.put_u8(b'C');
    out.put_i32((4 + tag.len() + 1) as i32);
    out.put_slice(tag.as_bytes());
    out.put_u8(0);
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
