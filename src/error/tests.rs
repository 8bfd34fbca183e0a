//! The one mapping (every error to its SQLSTATE, severity, origin and retry flag), the
//! messages clients see, and the ErrorResponse bytes.
use std::time::Duration;

use bytes::Bytes;

use super::*;
use Origin::{Client, Pgroute, Server};
use Severity::{Error as E, Fatal as F};

/// An ErrorResponse frame with these fields, assembled by hand.
fn error_frame(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in fields {
        body.push(*field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = vec![b'E'];
    frame.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    frame.extend(body);
    frame
}

/// A server's FATAL refusal of a login.
fn refusal(code: &str, message: &str) -> Bytes {
    let fields = [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ];
    Bytes::from(error_frame(&fields))
}

fn io() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset")
}

fn lost(source: BackendError, in_transaction: bool) -> Error {
    Error::ServerLost {
        node: "pg2".into(),
        source,
        in_transaction,
    }
}

fn cases() -> Vec<(Error, &'static str, Severity, Origin, bool)> {
    let second = Duration::from_secs(1);
    let not_starting = || refusal("57P03", "the database system is starting up");
    vec![
        (Error::Client(io()), "08006", F, Client, false),
        (Error::ClientGone, "08006", F, Client, false),
        (
            Violation::UnexpectedMessage('x').into(),
            "08P01",
            F,
            Client,
            false,
        ),
        (Violation::Incomplete.into(), "08P01", F, Client, false),
        (
            Error::UnsupportedProtocol { major: 4, minor: 0 },
            "0A000",
            F,
            Client,
            false,
        ),
        (Error::UnknownRole("bob".into()), "28000", F, Client, false),
        (
            Error::WrongPassword("app".into()),
            "28P01",
            F,
            Client,
            false,
        ),
        (
            Error::StartupSetting(SettingError::Lsn("x".into())),
            "22023",
            F,
            Client,
            false,
        ),
        (
            SettingError::Unknown("pgroute.x".into()).into(),
            "22023",
            E,
            Client,
            false,
        ),
        (
            Error::UnknownSetting("pgroute.x".into()),
            "42704",
            E,
            Client,
            false,
        ),
        (Error::EofInCopy, "08006", E, Client, false),
        (Error::SyncLost, "08P01", F, Client, false),
        (Error::TooManyClients, "53300", F, Pgroute, false),
        (RouteError::NoPrimary.into(), "57P03", E, Pgroute, false),
        (
            RouteError::SplitBrain("pg1, pg3".into()).into(),
            "57P03",
            E,
            Pgroute,
            false,
        ),
        (RouteError::AllLagging.into(), "57P03", E, Pgroute, false),
        (
            RouteError::Fenced("pg1".into()).into(),
            "57P03",
            F,
            Pgroute,
            false,
        ),
        (Error::NoNode, "08006", F, Pgroute, false),
        // A unit that got no server connection: the node's failures may go elsewhere.
        (BackendError::Connect(io()).into(), "08001", E, Server, true),
        (BackendError::Io(io()).into(), "08006", E, Server, true),
        (BackendError::Closed.into(), "08006", E, Server, true),
        (
            BackendError::Timeout(second).into(),
            "08001",
            E,
            Server,
            true,
        ),
        (BackendError::Protocol("x").into(), "08006", E, Server, true),
        (BackendError::OutOfStep.into(), "08006", E, Server, false),
        (frame_error().into(), "08006", E, Server, true),
        (
            BackendError::PoolTimeout(second).into(),
            "53300",
            E,
            Pgroute,
            true,
        ),
        (
            BackendError::NodeDown("pg2".into()).into(),
            "08001",
            E,
            Pgroute,
            true,
        ),
        (
            BackendError::Unavailable(not_starting()).into(),
            "57P03",
            E,
            Server,
            true,
        ),
        (refused("3D000").into(), "3D000", E, Server, false),
        (
            BackendError::Refused(Bytes::new()).into(),
            "08006",
            E,
            Server,
            false,
        ),
        // The login's own server connection.
        (Error::Login(refused("28P01")), "28P01", F, Server, false),
        (
            Error::Login(BackendError::Unavailable(not_starting())),
            "57P03",
            F,
            Server,
            true,
        ),
        (
            Error::Login(BackendError::Connect(io())),
            "08001",
            F,
            Server,
            true,
        ),
        (
            Error::Login(BackendError::PoolTimeout(second)),
            "53300",
            F,
            Pgroute,
            true,
        ),
        // The held connection.
        (lost(BackendError::Closed, false), "08006", E, Server, true),
        (
            lost(BackendError::OutOfStep, false),
            "08006",
            E,
            Server,
            false,
        ),
        (
            lost(BackendError::Io(io()), true),
            "08006",
            F,
            Server,
            false,
        ),
        (Error::ServerClosed, "08006", F, Server, false),
    ]
}

fn refused(code: &str) -> BackendError {
    BackendError::Refused(refusal(code, "refused"))
}

fn frame_error() -> BackendError {
    BackendError::Frame(crate::protocol::FrameError { tag: 'Z', len: 2 })
}

#[test]
fn every_error_maps_to_its_sqlstate_severity_origin_and_retry() {
    for (e, code, severity, origin, retry) in cases() {
        assert_eq!(e.sqlstate().code(), code, "{e:?}");
        assert_eq!(e.severity(), severity, "{e:?}");
        assert_eq!(e.origin(), origin, "{e:?}");
        assert_eq!(e.retry(), retry, "{e:?}");
    }
}

#[test]
fn clients_see_the_messages_they_always_saw() {
    let cases: Vec<(Error, &str)> = vec![
        (
            Violation::Frame(crate::protocol::FrameError { tag: 'Q', len: 2 }).into(),
            "protocol violation: invalid message length 2 for message type 'Q'",
        ),
        (
            Violation::DataAfterEncryptionRequest("SSL request").into(),
            "protocol violation: received unencrypted data after SSL request",
        ),
        (
            Error::UnsupportedProtocol {
                major: 1234,
                minor: 5679,
            },
            "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0",
        ),
        (
            Error::UnknownRole("nobody".into()),
            "role \"nobody\" does not exist",
        ),
        (
            Error::WrongPassword("app".into()),
            "password authentication failed for user \"app\"",
        ),
        (
            SettingError::Lsn("nope".into()).into(),
            "invalid LSN \"nope\"",
        ),
        (
            RouteError::NoPrimary.into(),
            "pgroute: no primary is available: no reachable node accepts writes",
        ),
        (
            BackendError::Refused(refusal("3D000", "database \"x\" does not exist")).into(),
            "pgroute: database \"x\" does not exist",
        ),
        (
            BackendError::Refused(Bytes::new()).into(),
            "pgroute: server refused the login",
        ),
        (
            BackendError::PoolTimeout(Duration::from_secs(2)).into(),
            "pgroute: no server connection free within 2s",
        ),
        (
            Error::Login(BackendError::Unavailable(refusal("57P03", "starting up"))),
            "server is not accepting connections",
        ),
        (
            lost(BackendError::Closed, false),
            "server connection to node pg2 lost: server closed the connection",
        ),
        (
            lost(BackendError::OutOfStep, false),
            "server connection to node pg2 lost: protocol error from server: unexpected \
             message from server",
        ),
        (
            lost(BackendError::Closed, true),
            "server connection to node pg2 lost during a transaction: server closed the \
             connection",
        ),
    ];
    for (e, message) in cases {
        assert_eq!(e.to_string(), message, "{e:?}");
    }
}

#[test]
fn pgroutes_own_errors_render_as_an_error_response_naming_pgroute() {
    let mut out = BytesMut::new();
    Error::TooManyClients.write_response(&mut out);
    let want = error_frame(&[
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
        (b'R', "pgroute"),
    ]);
    assert_eq!(&out[..], &want[..]);

    out.clear();
    Error::from(RouteError::AllLagging).write_response(&mut out);
    let want = error_frame(&[
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "57P03"),
        (
            b'M',
            "pgroute: every replica lags beyond the configured limits \
             (lag.when_all_lagging = \"error\")",
        ),
        (b'R', "pgroute"),
    ]);
    assert_eq!(&out[..], &want[..]);
}

#[test]
fn a_servers_refusal_of_a_unit_is_reported_by_its_code_and_message() {
    let mut out = BytesMut::new();
    let frame = refusal("3D000", "database \"x\" does not exist");
    Error::from(BackendError::Refused(frame)).write_response(&mut out);
    let want = error_frame(&[
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "3D000"),
        (b'M', "pgroute: database \"x\" does not exist"),
        (b'R', "pgroute"),
    ]);
    assert_eq!(&out[..], &want[..]);
}

#[test]
fn a_servers_refusal_of_the_login_passes_through_unchanged() {
    let frame = refusal("28P01", "password authentication failed for user \"app\"");
    let mut out = BytesMut::from(&b"before"[..]);
    Error::Login(BackendError::Refused(frame.clone())).write_response(&mut out);
    assert_eq!(&out[6..], &frame[..]);
}
