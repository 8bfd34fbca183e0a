//! Messages pgroute writes itself: to clients (auth, status, its own errors) and to servers
//! (statements prepared under pgroute's names, session-parameter replay).

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::response::{ErrorResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::Message;
use tokio_postgres::error::SqlState;

/// Severity of an error pgroute reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
}

fn encode<M: Message>(msg: &M, out: &mut BytesMut) {
    // Encoding only fails for oversized messages, which pgroute never builds.
    if let Err(e) = msg.encode(out) {
        tracing::error!(error = %e, "failed to encode a protocol message");
    }
}

/// An ErrorResponse with a real SQLSTATE, marked as coming from pgroute. Only
/// [`crate::error::Error::write_response`] writes one.
pub(crate) fn error_response(
    out: &mut BytesMut,
    severity: Severity,
    code: &SqlState,
    message: &str,
) {
    let sev = match severity {
        Severity::Error => "ERROR",
        Severity::Fatal => "FATAL",
    };
    let fields = vec![
        (b'S', sev.to_owned()),
        (b'V', sev.to_owned()),
        (b'C', code.code().to_owned()),
        (b'M', message.to_owned()),
        (b'R', "pgroute".to_owned()),
    ];
    encode(&ErrorResponse::new(fields), out);
}

/// A NoticeResponse (`severity` WARNING, NOTICE, …) from pgroute itself.
pub fn notice_response(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    let fields = vec![
        (b'S', severity.to_owned()),
        (b'V', severity.to_owned()),
        (b'C', code.to_owned()),
        (b'M', message.to_owned()),
        (b'R', "pgroute".to_owned()),
    ];
    encode(
        &pgwire::messages::response::NoticeResponse::new(fields),
        out,
    );
}

pub fn authentication(out: &mut BytesMut, auth: Authentication) {
    encode(&auth, out);
}

pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    encode(
        &ParameterStatus::new(name.to_owned(), value.to_owned()),
        out,
    );
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    let key = SecretKey::I32(secret);
    encode(&BackendKeyData::new(pid, key), out);
}

pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    encode(&ReadyForQuery::new(status), out);
}

/// CommandComplete with `tag` (e.g. `BEGIN`, `SELECT 1`).
pub fn command_complete(out: &mut BytesMut, tag: &str) {
    let at = begin(out, b'C');
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&[0]);
    finish(out, at);
}

/// A body-less backend message such as ParseComplete ('1') or CloseComplete ('3').
pub fn empty(tag: u8) -> Bytes {
    Bytes::copy_from_slice(&[tag, 0, 0, 0, 4])
}

/// Starts a message: writes the type byte and a length placeholder; returns the length's offset.
fn begin(out: &mut BytesMut, tag: u8) -> usize {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    at
}

/// Fills in the length of a message started with [`begin`].
fn finish(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// A Parse of a statement under `name`, given the body of the client's Parse after its name
/// (query text, NUL, parameter types).
pub fn parse(out: &mut BytesMut, name: &str, after_name: &[u8]) {
    let at = begin(out, b'P');
    out.put_slice(name.as_bytes());
    out.put_u8(0);
    out.put_slice(after_name);
    finish(out, at);
}

/// Rewrites a Bind or Describe/Close whose statement name sits after `prefix` (portal name, or
/// the 'S' kind byte) to use `name`.
pub fn with_statement_name(out: &mut BytesMut, tag: u8, prefix: &[u8], name: &str, rest: &[u8]) {
    let at = begin(out, tag);
    out.put_slice(prefix);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
    out.put_slice(rest);
    finish(out, at);
}

/// A simple Query message.
pub fn query(out: &mut BytesMut, sql: &str) {
    let at = begin(out, b'Q');
    out.put_slice(sql.as_bytes());
    out.put_u8(0);
    finish(out, at);
}

/// An ErrorResponse frame with `"ours"` replaced by `"theirs"` in its message: the server
/// names pgroute's statement, the client must see its own name. Other fields are kept.
pub fn rename_in_error(frame: &[u8], ours: &str, theirs: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(frame.len() + theirs.len());
    let at = begin(&mut out, frame[0]);
    let mut body = frame.get(5..).unwrap_or_default();
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            break;
        }
        let Some(end) = rest.iter().position(|b| *b == 0) else {
            break;
        };
        let value = String::from_utf8_lossy(&rest[..end]);
        out.put_u8(field);
        if field == b'M' {
            let from = format!("\"{ours}\"");
            let to = format!("\"{theirs}\"");
            out.put_slice(value.replace(&from, &to).as_bytes());
        } else {
            out.put_slice(&rest[..end]);
        }
        out.put_u8(0);
        body = &rest[end + 1..];
    }
    out.put_u8(0);
    finish(&mut out, at);
    out
}

/// Reads one field of an ErrorResponse/NoticeResponse frame.
fn error_field(frame: &[u8], wanted: u8) -> Option<&str> {
    let mut body = frame.get(5..)?;
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            break;
        }
        let end = rest.iter().position(|b| *b == 0)?;
        if field == wanted {
            return std::str::from_utf8(&rest[..end]).ok();
        }
        body = &rest[end + 1..];
    }
    None
}

/// Reads the SQLSTATE of an ErrorResponse frame, if it has one.
pub fn error_code(frame: &[u8]) -> Option<&str> {
    error_field(frame, b'C')
}

/// Whether an ErrorResponse frame is FATAL or PANIC: the server closes the connection after it.
/// (`V` is the severity never localized; servers before 9.6 send only `S`.)
pub fn is_fatal(frame: &[u8]) -> bool {
    let severity = error_field(frame, b'V').or_else(|| error_field(frame, b'S'));
    matches!(severity, Some("FATAL" | "PANIC"))
}

/// Reads the message of an ErrorResponse frame.
pub fn error_message(frame: &[u8]) -> Option<&str> {
    error_field(frame, b'M')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{frame_len, Body};

    #[test]
    fn error_response_carries_sqlstate() {
        let mut out = BytesMut::new();
        error_response(
            &mut out,
            Severity::Error,
            &SqlState::TOO_MANY_CONNECTIONS,
            "full",
        );
        assert_eq!(frame_len(&out).unwrap(), Some(out.len()));
        assert_eq!(error_code(&out), Some("53300"));
    }

    #[test]
    fn errors_name_the_clients_statement() {
        let mut out = BytesMut::new();
        error_response(
            &mut out,
            Severity::Error,
            &SqlState::DUPLICATE_PSTATEMENT,
            "prepared statement \"pgr_1\" already exists",
        );
        let renamed = rename_in_error(&out, "pgr_1", "s1");
        assert_eq!(frame_len(&renamed).unwrap(), Some(renamed.len()));
        assert_eq!(error_code(&renamed), Some("42P05"));
        let text = String::from_utf8_lossy(&renamed);
        assert!(text.contains("prepared statement \"s1\" already exists"));
        assert!(text.contains("pgroute"));
    }

    #[test]
    fn renamed_bind_keeps_the_rest() {
        let mut out = BytesMut::new();
        with_statement_name(&mut out, b'B', b"portal\0", "pgr_7", b"\0\0\0\0\0\0");
        assert_eq!(frame_len(&out).unwrap(), Some(out.len()));
        let mut body = Body::of_frame(&out);
        assert_eq!(body.cstr("b").unwrap(), "portal");
        assert_eq!(body.cstr("b").unwrap(), "pgr_7");
        assert_eq!(body.rest(), b"\0\0\0\0\0\0");
    }
}
