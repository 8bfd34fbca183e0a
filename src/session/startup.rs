//! A client's first messages: SSL/GSS negotiation, StartupMessage, authentication, and the
//! ParameterStatus/BackendKeyData/ReadyForQuery a driver expects before its first query.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes, BytesMut};
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramServerAuth};
use pgwire::api::auth::Password;
use pgwire::messages::startup::Authentication;

use super::client::{Client, ImpossibleLength};
use crate::config::{AuthMethod, UserConfig};
use crate::error::{Error, Violation};
use crate::protocol::messages;
use crate::protocol::Body;

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;
const SCRAM_ITERATIONS: usize = 4096;

/// What the client asked for in its StartupMessage.
#[derive(Debug)]
pub enum Hello {
    Startup {
        params: BTreeMap<String, String>,
        /// The client asked for a newer protocol minor version or `_pq_.` options.
        negotiate: Option<(i32, Vec<String>)>,
    },
    Cancel {
        pid: i32,
        secret: i32,
    },
    /// A packet PostgreSQL closes the connection on without a word (ProcessStartupPacket
    /// only logs it, as a COMMERROR): an impossible length, a CancelRequest of the wrong size.
    /// Why, for the log.
    Invalid(&'static str),
}

/// Reads one length-prefixed startup-phase packet (no type byte); None when its length is
/// impossible (a client that sent a Terminate or any typed message first ends up here too).
async fn read_packet(client: &mut Client) -> Result<Option<Bytes>, Error> {
    loop {
        match client.next_startup_packet() {
            Ok(Some(pkt)) => return Ok(Some(pkt)),
            Ok(None) => {}
            Err(ImpossibleLength) => return Ok(None),
        }
        if client.read_more().await.map_err(Error::Client)? == 0 {
            return Err(Error::ClientGone);
        }
    }
}

/// Reads packets until a StartupMessage or CancelRequest, refusing SSL and GSS encryption.
pub async fn read_hello(client: &mut Client) -> Result<Hello, Error> {
    // Each encryption may be asked for once; PostgreSQL treats a second request for the same
    // one as an unknown protocol version.
    let (mut ssl_done, mut gss_done) = (false, false);
    loop {
        let Some(mut pkt) = read_packet(client).await? else {
            return Ok(Hello::Invalid("invalid length of startup packet"));
        };
        pkt.advance(4);
        let code = pkt.get_i32();
        match code {
            // "The server then responds with a single byte containing S or N" — we have no TLS yet.
            SSL_REQUEST if !ssl_done => ssl_done = true,
            GSSENC_REQUEST if !gss_done => gss_done = true,
            CANCEL_REQUEST if pkt.len() == 8 => {
                return Ok(Hello::Cancel {
                    pid: pkt.get_i32(),
                    secret: pkt.get_i32(),
                });
            }
            CANCEL_REQUEST => return Ok(Hello::Invalid("invalid length of cancel request")),
            _ if code >> 16 == 3 => return parse_startup(code, &pkt),
            _ if code >> 16 < 3 => return Err(refuse_protocol_2(client, code).await),
            _ => {
                return Err(Error::UnsupportedProtocol {
                    major: code >> 16,
                    minor: code & 0xffff,
                })
            }
        }
        client.out().extend_from_slice(b"N");
        client.flush().await.map_err(Error::Client)?;
        // "At this point we should have no data already buffered. If we do, it was received
        // before we performed the SSL handshake" (PostgreSQL refuses it even after 'N').
        if client.buffered() > 0 {
            let what = if code == SSL_REQUEST {
                "SSL request"
            } else {
                "GSSAPI encryption request"
            };
            return Err(Violation::DataAfterEncryptionRequest(what).into());
        }
    }
}

/// PostgreSQL answers a protocol 2 client in protocol 2's error format: 'E', then the text,
/// with no length word. The session ends.
async fn refuse_protocol_2(client: &mut Client, code: i32) -> Error {
    let text = format!(
        "EFATAL:  unsupported frontend protocol {}.{}: server supports 3.0 to 3.0\n\0",
        code >> 16,
        code & 0xffff
    );
    client.out().extend_from_slice(text.as_bytes());
    let _ = client.flush().await;
    Error::ClientGone
}

/// The name/value pairs of a StartupMessage body (after the version), scanned as PostgreSQL
/// scans them (ProcessStartupPacket): a string runs to its NUL or the packet's end, a name
/// without a value ends the list, and the list must end exactly one byte before the packet
/// does (that byte is not checked).
fn parse_startup(code: i32, body: &[u8]) -> Result<Hello, Error> {
    fn cstr(b: &[u8]) -> &[u8] {
        b.iter().position(|&c| c == 0).map_or(b, |end| &b[..end])
    }
    let mut params = BTreeMap::new();
    let mut unsupported = Vec::new();
    let mut offset = 0;
    while offset < body.len() && body[offset] != 0 {
        let name = cstr(&body[offset..]);
        let value_at = offset + name.len() + 1;
        if value_at >= body.len() {
            break;
        }
        let value = cstr(&body[value_at..]);
        offset = value_at + value.len() + 1;
        let name = String::from_utf8_lossy(name).into_owned();
        if name.starts_with("_pq_.") {
            unsupported.push(name);
        } else {
            params.insert(name, String::from_utf8_lossy(value).into_owned());
        }
    }
    if offset + 1 != body.len() {
        return Err(Error::StartupLayout);
    }
    let minor = code & 0xffff;
    let negotiate = (minor > 0 || !unsupported.is_empty()).then_some((minor.min(0), unsupported));
    Ok(Hello::Startup { params, negotiate })
}

/// Salted passwords are computed once per user, not per login: PBKDF2 is slow on purpose.
pub struct ScramSecret {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl ScramSecret {
    pub fn new(password: &str) -> Self {
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        ScramSecret {
            salt: salt.to_vec(),
            salted,
        }
    }
}

/// Authenticates the client as `user`; on failure returns the error to report (28P01).
pub async fn authenticate(
    client: &mut Client,
    user: &UserConfig,
    scram: &ScramSecret,
) -> Result<(), Error> {
    let failed = || Error::WrongPassword(user.name.clone());
    match user.auth {
        AuthMethod::Trust => return Ok(()),
        AuthMethod::Md5 => {
            let salt: [u8; 4] = rand::random();
            messages::authentication(client.out(), Authentication::MD5Password(salt.to_vec()));
            send(client).await?;
            let frame = read_password_frame(client).await?;
            let got = Body::of_frame(&frame)
                .cstr("password")
                .unwrap_or_default()
                .to_owned();
            let want = postgres_protocol::authentication::md5_hash(
                user.name.as_bytes(),
                user.password.as_bytes(),
                salt,
            );
            if got != want {
                return Err(failed());
            }
        }
        AuthMethod::ScramSha256 => scram_exchange(client, scram).await.map_err(|e| {
            tracing::debug!(error = %e, "SCRAM exchange failed");
            // A client that leaves mid-exchange is closed silently, as PostgreSQL does.
            if matches!(
                e,
                Error::ClientGone | Error::Client(_) | Error::Protocol(Violation::TooLong(_))
            ) {
                return e;
            }
            failed()
        })?,
    }
    Ok(())
}

async fn scram_exchange(client: &mut Client, secret: &ScramSecret) -> Result<(), Error> {
    messages::authentication(
        client.out(),
        Authentication::SASL(vec!["SCRAM-SHA-256".to_owned()]),
    );
    send(client).await?;
    // SASLInitialResponse: mechanism name, then Int32 length of the client-first message (or -1).
    let frame = read_password_frame(client).await?;
    let mut body = Body::of_frame(&frame);
    let bad = |_| Violation::Sasl("malformed SASLInitialResponse");
    let mech = body.cstr("sasl").map_err(bad)?;
    let len = body.i32("sasl").map_err(bad)?;
    if mech != "SCRAM-SHA-256" || len < 0 || body.rest().len() != len as usize {
        return Err(Violation::Sasl("unsupported SASL mechanism").into());
    }
    let server = ScramServerAuth::new();
    let password = Password::new(Some(secret.salt.clone()), secret.salted.clone());
    let (server_first, waiting) = server
        .on_client_first_message(body.rest(), password)
        .map_err(|e| Violation::Scram(Box::new(e)))?;
    messages::authentication(
        client.out(),
        Authentication::SASLContinue(server_first.into()),
    );
    send(client).await?;
    let frame = read_password_frame(client).await?;
    let server_final = waiting
        .on_client_final_message(Body::of_frame(&frame).rest())
        .map_err(|e| Violation::Scram(Box::new(e)))?;
    messages::authentication(client.out(), Authentication::SASLFinal(server_final.into()));
    send(client).await
}

/// Reads the client's next PasswordMessage-family frame ('p').
async fn read_password_frame(client: &mut Client) -> Result<BytesMut, Error> {
    loop {
        match client.next_frame()? {
            Some(f) if f[0] == b'p' => return Ok(f),
            Some(f) => return Err(Violation::ExpectedPassword(f[0] as char).into()),
            None => {}
        }
        if client.read_more().await.map_err(Error::Client)? == 0 {
            return Err(Error::ClientGone);
        }
    }
}

/// Writes what is queued for the client.
async fn send(client: &mut Client) -> Result<(), Error> {
    client.flush().await.map_err(Error::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params_of(body: &[u8]) -> Result<Vec<(String, String)>, String> {
        match parse_startup(0x0003_0000, body) {
            Ok(Hello::Startup { params, .. }) => Ok(params.into_iter().collect()),
            Ok(_) => Err("not a startup".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn startup_parameters_are_scanned_as_postgres_scans_them() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(params_of(b"user\0app\0\0"), Ok(vec![pair("user", "app")]));
        // The last byte ends the list whatever it is; a one-byte name there has no value.
        assert_eq!(params_of(b"user\0app\0x"), Ok(vec![pair("user", "app")]));
        let layout = Err("invalid startup packet layout: expected terminator as last byte".into());
        assert_eq!(params_of(b"user\0app\0xy"), layout);
        assert_eq!(params_of(b"user\0app"), layout);
        assert_eq!(params_of(b"user\0app\0\0\0"), layout);
        assert_eq!(params_of(b""), layout);
        // Bytes that are not UTF-8 do not end the session task.
        assert!(params_of(b"user\0\xff\xfe\0\0").is_ok());
    }
}
