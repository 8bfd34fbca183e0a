//! A bare PostgreSQL frontend for what tokio-postgres cannot do: several statements before one
//! Sync, statement names of our choosing, COPY through the extended protocol, startup
//! parameters of our choosing, the ParameterStatus messages it keeps to itself, and a
//! connection dropped without Terminate.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::{DataRowBody, ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A server message, reduced to what the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    ParseComplete,
    BindComplete,
    CloseComplete,
    Row(Vec<Option<String>>),
    Complete(String),
    Error {
        code: String,
        message: String,
    },
    Ready(u8),
    CopyIn,
    /// NotificationResponse: the notifying backend's pid and the channel.
    Notify {
        pid: i32,
        channel: String,
    },
    /// FunctionCallResponse: the result, as text.
    FunctionResult(Option<String>),
    Other,
}

impl Reply {
    /// An error reply with only its SQLSTATE, to compare with replies passed through
    /// [`codes_only`].
    pub fn error(code: &str) -> Reply {
        Reply::Error {
            code: code.to_owned(),
            message: String::new(),
        }
    }
}

pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    /// The last value of every ParameterStatus received.
    parameters: BTreeMap<String, String>,
    /// The process id from BackendKeyData.
    pub backend_pid: i32,
}

/// The client side of authentication during [`RawConn::connect_with`].
struct Login<'a> {
    user: &'a str,
    password: &'a [u8],
    scram: Option<ScramSha256>,
}

impl Login<'_> {
    /// Writes the answer to an authentication request into `out`; any other message is an error.
    fn answer(&mut self, msg: Message, out: &mut BytesMut) -> Result<(), String> {
        match msg {
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(self.password, out).map_err(|e| e.to_string())?
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = postgres_protocol::authentication::md5_hash(
                    self.user.as_bytes(),
                    self.password,
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), out).map_err(|e| e.to_string())?;
            }
            Message::AuthenticationSasl(_) => {
                let s = ScramSha256::new(self.password, ChannelBinding::unsupported());
                frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), out)
                    .map_err(|e| e.to_string())?;
                self.scram = Some(s);
            }
            Message::AuthenticationSaslContinue(body) => {
                let s = self.scram.as_mut().ok_or("SASL continue before start")?;
                s.update(body.data()).map_err(|e| e.to_string())?;
                frontend::sasl_response(s.message(), out).map_err(|e| e.to_string())?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let s = self.scram.as_mut().ok_or("SASL final before start")?;
                s.finish(body.data()).map_err(|e| e.to_string())?;
            }
            _ => return Err("unexpected message during startup".into()),
        }
        Ok(())
    }
}

impl RawConn {
    /// Starts up and authenticates (SCRAM, md5, cleartext or trust, as asked).
    pub async fn connect(
        port: u16,
        user: &str,
        password: Option<&str>,
        database: &str,
    ) -> Result<RawConn, String> {
        RawConn::connect_with(port, user, password, database, &[]).await
    }

    /// [`RawConn::connect`] with `extra` startup parameters.
    pub async fn connect_with(
        port: u16,
        user: &str,
        password: Option<&str>,
        database: &str,
        extra: &[(&str, &str)],
    ) -> Result<RawConn, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let mut conn = RawConn {
            stream,
            buf: BytesMut::new(),
            parameters: BTreeMap::new(),
            backend_pid: 0,
        };
        let mut params = vec![("user", user), ("database", database)];
        params.extend_from_slice(extra);
        let mut out = BytesMut::new();
        frontend::startup_message(params, &mut out).map_err(|e| e.to_string())?;
        conn.write(&out).await?;
        let mut login = Login {
            user,
            password: password.unwrap_or("").as_bytes(),
            scram: None,
        };
        loop {
            let mut out = BytesMut::new();
            match conn.next().await? {
                Message::BackendKeyData(body) => conn.backend_pid = body.process_id(),
                Message::AuthenticationOk
                | Message::ParameterStatus(_)
                | Message::NoticeResponse(_) => {}
                Message::ErrorResponse(body) => {
                    let (code, message) = error_of(&body);
                    return Err(format!("{code}: {message}"));
                }
                Message::ReadyForQuery(_) => return Ok(conn),
                other => login.answer(other, &mut out)?,
            }
            if !out.is_empty() {
                conn.write(&out).await?;
            }
        }
    }

    /// The last value the server reported for `name` with ParameterStatus.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.parameters.get(name).cloned()
    }

    /// One simple Query: the text of every row, or the error.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(|e| e.to_string())?;
        self.write(&out).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.next().await? {
                Message::DataRow(body) => rows.push(row_of(&body)?),
                Message::ErrorResponse(body) => {
                    let (code, message) = error_of(&body);
                    error = Some(format!("{code}: {message}"));
                }
                Message::ReadyForQuery(_) => return error.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    /// Sends `bytes` as they are; panics if that fails.
    pub async fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.write(bytes).await {
            panic!("write to pgroute: {e}");
        }
    }

    /// Sends `bytes` and collects the replies up to the ReadyForQuery of every Sync (or
    /// Query) in them.
    pub async fn exchange(&mut self, bytes: &[u8]) -> Vec<Reply> {
        let mut readies = count_ready_expected(bytes);
        self.send(bytes).await;
        let mut replies = Vec::new();
        while readies > 0 {
            let reply = self.reply(&replies).await;
            if matches!(reply, Some(Reply::Ready(_))) {
                readies -= 1;
            }
            replies.extend(reply);
        }
        replies
    }

    /// Collects replies up to and including the first one `last` accepts.
    pub async fn read_until(&mut self, last: impl Fn(&Reply) -> bool) -> Vec<Reply> {
        let mut replies = Vec::new();
        loop {
            if let Some(reply) = self.reply(&replies).await {
                let done = last(&reply);
                replies.push(reply);
                if done {
                    return replies;
                }
            }
        }
    }

    /// Reads until pgroute closes the connection; returns the SQLSTATEs of the errors it sent
    /// first. Err if it neither closes nor sends anything within the timeout.
    pub async fn until_closed(&mut self) -> Result<Vec<String>, String> {
        let mut codes = Vec::new();
        loop {
            match self.next().await {
                Ok(Message::ErrorResponse(body)) => codes.push(error_of(&body).0),
                Ok(_) => {}
                Err(e) if e == "pgroute closed the connection" || e.contains("reset") => {
                    return Ok(codes)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the connection with a TCP reset: no Terminate, no orderly close.
    pub fn reset(self) {
        self.stream.set_zero_linger().expect("SO_LINGER 0");
        drop(self.stream);
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        tokio::time::timeout(TIMEOUT, self.stream.write_all(bytes))
            .await
            .map_err(|_| "no write within 10 s".to_owned())?
            .map_err(|e| e.to_string())
    }

    /// The next message; ParameterStatus is recorded on the way.
    async fn next(&mut self) -> Result<Message, String> {
        loop {
            if self.function_result_ready() {
                return Err(FUNCTION_RESULT.into());
            }
            if let Some(msg) = Message::parse(&mut self.buf).map_err(|e| e.to_string())? {
                if let Message::ParameterStatus(body) = &msg {
                    let name = body.name().map_err(|e| e.to_string())?.to_owned();
                    let value = body.value().map_err(|e| e.to_string())?.to_owned();
                    self.parameters.insert(name, value);
                }
                return Ok(msg);
            }
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| "no reply within 10 s".to_owned())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("pgroute closed the connection".into());
            }
        }
    }

    /// The next message, or None for those the tests do not look at; panics (naming the
    /// replies `so_far`) if there is none.
    async fn reply(&mut self, so_far: &[Reply]) -> Option<Reply> {
        let msg = match self.next().await {
            Ok(msg) => msg,
            Err(e) if e == FUNCTION_RESULT => return Some(self.function_result()),
            Err(e) => panic!("after {so_far:?}: {e}"),
        };
        let reply = match msg {
            Message::ParseComplete => Reply::ParseComplete,
            Message::BindComplete => Reply::BindComplete,
            Message::CloseComplete => Reply::CloseComplete,
            Message::DataRow(body) => Reply::Row(row_of(&body).expect("DataRow")),
            Message::CommandComplete(body) => Reply::Complete(body.tag().expect("tag").to_owned()),
            Message::ErrorResponse(body) => {
                let (code, message) = error_of(&body);
                Reply::Error { code, message }
            }
            Message::ReadyForQuery(body) => Reply::Ready(body.status()),
            Message::CopyInResponse(_) => Reply::CopyIn,
            Message::NotificationResponse(body) => Reply::Notify {
                pid: body.process_id(),
                channel: body.channel().expect("channel").to_owned(),
            },
            Message::RowDescription(_)
            | Message::NoData
            | Message::ParameterDescription(_)
            | Message::NoticeResponse(_)
            | Message::ParameterStatus(_) => return None,
            _ => Reply::Other,
        };
        Some(reply)
    }
}

/// What `next` says when the next message is a FunctionCallResponse (which postgres-protocol
/// does not parse).
const FUNCTION_RESULT: &str = "FunctionCallResponse";

impl RawConn {
    /// A whole FunctionCallResponse is at the front of the buffer.
    fn function_result_ready(&self) -> bool {
        self.buf.len() >= 5 && self.buf[0] == b'V' && {
            let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
            self.buf.len() > len as usize
        }
    }

    fn function_result(&mut self) -> Reply {
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let frame = self.buf.split_to(len as usize + 1);
        let n = i32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]);
        let value =
            (n >= 0).then(|| String::from_utf8_lossy(&frame[9..9 + n as usize]).into_owned());
        Reply::FunctionResult(value)
    }
}

/// The text of every value in a DataRow.
fn row_of(body: &DataRowBody) -> Result<Vec<Option<String>>, String> {
    let buf = body.buffer();
    body.ranges()
        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())))
        .collect::<Vec<_>>()
        .map_err(|e| e.to_string())
}

/// The SQLSTATE and message of an ErrorResponse.
fn error_of(body: &ErrorResponseBody) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    let mut fields = body.fields();
    while let Some(field) = fields.next().expect("error fields") {
        match field.type_() {
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            _ => {}
        }
    }
    (code, message)
}

/// Number of Sync and Query messages in `bytes` (each is answered by one ReadyForQuery).
fn count_ready_expected(mut bytes: &[u8]) -> usize {
    let mut n = 0;
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        n += usize::from(matches!(bytes[0], b'S' | b'Q' | b'F'));
        bytes = &bytes[1 + len..];
    }
    n
}

pub fn rows(replies: &[Reply]) -> Vec<Vec<Option<String>>> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::Row(values) => Some(values.clone()),
            _ => None,
        })
        .collect()
}

/// The SQLSTATE and message of every error in `replies`.
pub fn errors(replies: &[Reply]) -> Vec<(String, String)> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::Error { code, message } => Some((code.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

/// `replies` with the error messages left out, for tests that check only SQLSTATEs (compare
/// with [`Reply::error`]).
pub fn codes_only(replies: Vec<Reply>) -> Vec<Reply> {
    replies
        .into_iter()
        .map(|r| match r {
            Reply::Error { code, .. } => Reply::error(&code),
            r => r,
        })
        .collect()
}

pub fn query(out: &mut BytesMut, sql: &str) {
    frontend::query(sql, out).expect("Query");
}

pub fn parse(out: &mut BytesMut, name: &str, sql: &str) {
    frontend::parse(name, sql, std::iter::empty(), out).expect("Parse");
}

/// Bind (no parameters, text results) of statement `name` to the unnamed portal, then Execute
/// it.
pub fn bind_execute(out: &mut BytesMut, name: &str) {
    let mut body = BytesMut::new();
    body.put_u8(0); // unnamed portal
    body.put_slice(name.as_bytes());
    body.put_u8(0);
    body.put_i16(0); // parameter formats
    body.put_i16(0); // parameters
    body.put_i16(0); // result formats
    out.put_u8(b'B');
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(&body);
    frontend::execute("", 0, out).expect("Execute");
}

/// Parse, Bind and Execute of `sql` as the unnamed statement.
pub fn statement(out: &mut BytesMut, sql: &str) {
    parse(out, "", sql);
    bind_execute(out, "");
}

pub fn describe(out: &mut BytesMut, name: &str) {
    frontend::describe(b'S', name, out).expect("Describe");
}

pub fn close(out: &mut BytesMut, name: &str) {
    frontend::close(b'S', name, out).expect("Close");
}

pub fn sync(out: &mut BytesMut) {
    frontend::sync(out);
}

pub fn copy_data(out: &mut BytesMut, data: &[u8]) {
    out.put_u8(b'd');
    out.put_i32(data.len() as i32 + 4);
    out.put_slice(data);
}

pub fn copy_done(out: &mut BytesMut) {
    frontend::copy_done(out);
}

pub fn copy_fail(out: &mut BytesMut, message: &str) {
    frontend::copy_fail(message, out).expect("CopyFail");
}

/// FunctionCall of function `oid` with text arguments, asking for a text result.
pub fn function_call(out: &mut BytesMut, oid: u32, args: &[&str]) {
    let mut body = BytesMut::new();
    body.put_u32(oid);
    body.put_i16(1); // one format code for every argument
    body.put_i16(0); // text
    body.put_i16(args.len() as i16);
    for arg in args {
        body.put_i32(arg.len() as i32);
        body.put_slice(arg.as_bytes());
    }
    body.put_i16(0); // text result
    out.put_u8(b'F');
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(&body);
}

pub fn flush(out: &mut BytesMut) {
    frontend::flush(out);
}
