//! One side of the differential test: runs a [`Case`] over a fresh raw connection and records
//! what the server sent, normalised so that the direct and the proxied streams compare equal
//! where PostgreSQL's behaviour is the same.
//!
//! Left out or masked: BackendKeyData contents, every ParameterStatus of the startup (order and
//! presence differ), `pgroute.*` ParameterStatus, a later ParameterStatus that repeats the value
//! the client already has, the notifying pid, the table and `application_name` of the side, LSN
//! values in rows, error and notice text (severity and SQLSTATE are compared, the text is kept
//! for the report).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::diff_case::{Case, Step};

/// The statement that marks the end of a case's replies: a syntax error, which PostgreSQL
/// reports even inside a failed transaction (the parser runs before the aborted-transaction
/// check), where any real statement would only get 25P02.
pub const END_MARK: &str = "diff_end_marker";

/// Where and as whom a case runs.
#[derive(Debug, Clone)]
pub struct Side {
    pub port: u16,
    pub user: String,
    pub password: String,
    /// `application_name` at startup, unique per case and side.
    pub app: String,
    /// Replaces `{t}` in the case.
    pub table: String,
    /// Simple queries sent after startup and not recorded.
    pub prelude: Vec<String>,
}

/// Something the client saw.
#[derive(Debug, Clone)]
pub enum Event {
    /// A server message: the compared form and a note that is not compared (error text).
    Msg { key: String, note: String },
    /// The server closed (or reset) the connection.
    Closed,
    /// Nothing more arrived before the deadline while more was expected.
    Hang,
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        match (self, other) {
            (Event::Msg { key: a, .. }, Event::Msg { key: b, .. }) => a == b,
            (Event::Closed, Event::Closed) | (Event::Hang, Event::Hang) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Msg { key, note } if note.is_empty() => write!(f, "{key}"),
            Event::Msg { key, note } => write!(f, "{key}  ({note})"),
            Event::Closed => write!(f, "<closed>"),
            Event::Hang => write!(f, "<hang: nothing more before the deadline>"),
        }
    }
}

/// Everything one side saw for one case.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub events: Vec<Event>,
    /// The startup failed (no comparison possible).
    pub startup_error: Option<String>,
    /// The backend pid from BackendKeyData (direct side: the server's own pid).
    pub pid: Option<i32>,
    pub elapsed: Duration,
}

struct Wire {
    stream: TcpStream,
    buf: BytesMut,
    deadline: Instant,
    side: Side,
    /// The last value of every ParameterStatus seen.
    params: BTreeMap<String, String>,
    events: Vec<Event>,
    closed: bool,
}

/// A raw backend message.
struct Frame {
    tag: u8,
    body: BytesMut,
}

impl Wire {
    async fn write(&mut self, bytes: &[u8]) {
        if self.closed || bytes.is_empty() {
            return;
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        // A server that closed early makes writes fail: what it sent first is still read.
        let _ = tokio::time::timeout(left, self.stream.write_all(bytes)).await;
    }

    /// The next frame; None once closed or past the deadline (recorded as an event).
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = len as usize;
                if len < 4 {
                    self.events
                        .push(msg(format!("<bad frame length {len}>"), ""));
                    self.end(Event::Closed);
                    return None;
                }
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4);
                    return Some(Frame { tag, body });
                }
            }
            if self.closed {
                return None;
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => {
                    self.end(Event::Hang);
                    return None;
                }
                Ok(Ok(0)) | Ok(Err(_)) => {
                    if !self.buf.is_empty() && self.buf.len() < 5 {
                        let rest = std::mem::take(&mut self.buf);
                        self.events
                            .push(msg(format!("<bytes {:?}>", &rest[..]), ""));
                    }
                    self.end(Event::Closed);
                    return None;
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    fn end(&mut self, event: Event) {
        if !self.closed {
            self.closed = true;
            self.events.push(event);
        }
    }

    /// Reads and records frames until one has `tag` (true), or the end (false).
    async fn until_tag(&mut self, tag: u8) -> bool {
        while let Some(f) = self.frame().await {
            let t = f.tag;
            self.record(f);
            if t == tag {
                return true;
            }
        }
        false
    }

    /// Reads and records frames until the end mark's ReadyForQuery, or the end.
    async fn until_end_mark(&mut self) {
        let mut marked = false;
        while let Some(f) = self.frame().await {
            let t = f.tag;
            let is_mark = t == b'E' && field(&f.body, b'M').is_some_and(|m| m.contains(END_MARK));
            self.record(f);
            marked |= is_mark;
            if marked && t == b'Z' {
                return;
            }
        }
    }

    async fn until_closed(&mut self) {
        while let Some(f) = self.frame().await {
            self.record(f);
        }
    }

    fn record(&mut self, f: Frame) {
        if let Some(key) = self.normalise(&f) {
            let note = if matches!(f.tag, b'E' | b'N') {
                field(&f.body, b'M').unwrap_or_default()
            } else {
                String::new()
            };
            self.events.push(msg(key, &note));
        }
    }

    fn clean(&self, s: &str) -> String {
        s.replace(&self.side.table, "{t}")
            .replace(&self.side.app, "<app>")
    }

    /// The compared form of a frame; None for frames that are not compared.
    fn normalise(&mut self, f: &Frame) -> Option<String> {
        let mut b = Reader(&f.body[..]);
        let tag = f.tag as char;
        Some(match f.tag {
            b'S' => {
                let (name, value) = (b.cstr(), b.cstr());
                if name.starts_with("pgroute.") || self.params.get(&name) == Some(&value) {
                    return None;
                }
                self.params.insert(name.clone(), value.clone());
                format!("S {name}={}", self.clean(&value))
            }
            b'K' => "K".into(),
            b'Z' => format!("Z {}", b.u8() as char),
            b'C' => format!("C {}", self.clean(&b.cstr())),
            b'D' => {
                let n = b.i16();
                let cells: Vec<String> = (0..n).map(|_| cell(&mut b, |s| self.clean(s))).collect();
                format!("D [{}]", cells.join(", "))
            }
            b'T' => row_description(&mut b),
            b'E' | b'N' => {
                let severity = field(&f.body, b'V').or_else(|| field(&f.body, b'S'));
                let code = field(&f.body, b'C').unwrap_or_default();
                format!("{tag} {} {code}", severity.unwrap_or_default())
            }
            b'A' => {
                let _pid = b.i32();
                format!("A {} {}", self.clean(&b.cstr()), self.clean(&b.cstr()))
            }
            b'G' | b'H' | b'W' => copy_response(tag, &mut b),
            b'd' => format!("d {:?}", self.clean(&String::from_utf8_lossy(&f.body))),
            b'V' => format!("V {}", cell(&mut b, |s| self.clean(s))),
            b't' => {
                let n = b.i16();
                let oids: Vec<String> = (0..n).map(|_| b.i32().to_string()).collect();
                format!("t [{}]", oids.join(","))
            }
            b'R' => format!("R {}", b.i32()),
            b'v' => {
                let minor = b.i32();
                let n = b.i32();
                let names: Vec<String> = (0..n).map(|_| b.cstr()).collect();
                format!("v {minor} [{}]", names.join(","))
            }
            b'1' | b'2' | b'3' | b'n' | b's' | b'I' | b'c' => tag.to_string(),
            _ => format!("? {tag:?} {} bytes", f.body.len()),
        })
    }
}

/// The compared form of a RowDescription: each column's name, type, attribute number, type
/// modifier and format (not the table oid, which differs between the sides, nor the length).
fn row_description(b: &mut Reader<'_>) -> String {
    let n = b.i16();
    let cols: Vec<String> = (0..n)
        .map(|_| {
            let name = b.cstr();
            let (_table, attnum, ty) = (b.i32(), b.i16(), b.i32());
            let (_len, typmod, format) = (b.i16(), b.i32(), b.i16());
            format!("{name}:{ty}/{attnum}/{typmod}/{format}")
        })
        .collect();
    format!("T [{}]", cols.join(", "))
}

/// The compared form of a CopyInResponse, CopyOutResponse or CopyBothResponse.
fn copy_response(tag: char, b: &mut Reader<'_>) -> String {
    let format = b.u8();
    let n = b.i16();
    let cols: Vec<String> = (0..n).map(|_| b.i16().to_string()).collect();
    format!("{tag} {format} [{}]", cols.join(","))
}

fn msg(key: String, note: &str) -> Event {
    Event::Msg {
        key,
        note: note.to_owned(),
    }
}

/// One DataRow cell or FunctionCallResponse value, LSN values masked.
fn cell(b: &mut Reader<'_>, clean: impl Fn(&str) -> String) -> String {
    let len = b.i32();
    if len < 0 {
        return "NULL".into();
    }
    let v = String::from_utf8_lossy(b.take(len as usize)).into_owned();
    if looks_like_lsn(&v) {
        return "<lsn>".into();
    }
    format!("{:?}", clean(&v))
}

fn looks_like_lsn(v: &str) -> bool {
    v.split_once('/').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

/// Field `code` of an ErrorResponse / NoticeResponse body.
fn field(body: &[u8], code: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&c, tail)) = rest.split_first() {
        if c == 0 {
            return None;
        }
        let end = tail.iter().position(|&x| x == 0)?;
        if c == code {
            return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// Reads a message body; short bodies read as zeros / empty strings (a malformed message then
/// shows up as a difference, not a panic).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn i16(&mut self) -> i16 {
        let b = self.take(2);
        if b.len() == 2 {
            i16::from_be_bytes([b[0], b[1]])
        } else {
            0
        }
    }
    fn i32(&mut self) -> i32 {
        let b = self.take(4);
        if b.len() == 4 {
            i32::from_be_bytes([b[0], b[1], b[2], b[3]])
        } else {
            0
        }
    }
    fn cstr(&mut self) -> String {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(self.0.len());
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.take(end + 1);
        s
    }
}

/// Runs `case` on `side`; the whole run must end before `timeout`.
pub async fn run(side: &Side, case: &Case, timeout: Duration) -> Transcript {
    let began = Instant::now();
    let mut t = Transcript::default();
    let stream = match TcpStream::connect(("127.0.0.1", side.port)).await {
        Ok(s) => s,
        Err(e) => {
            t.startup_error = Some(format!("connect: {e}"));
            return t;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut w = Wire {
        stream,
        buf: BytesMut::new(),
        deadline: began + timeout,
        side: side.clone(),
        params: BTreeMap::new(),
        events: Vec::new(),
        closed: false,
    };
    if let Some(Step::RawStartup(bytes)) = case.steps.first() {
        raw_startup(&mut w, bytes).await;
    } else {
        match startup(&mut w).await {
            Ok(pid) => t.pid = Some(pid),
            Err(e) => {
                t.startup_error = Some(e);
                return t;
            }
        }
        w.events.clear();
        steps(&mut w, &case.steps).await;
    }
    t.events = w.events;
    t.elapsed = began.elapsed();
    t
}

async fn raw_startup(w: &mut Wire, bytes: &[u8]) {
    w.write(bytes).await;
    let _ = w.stream.shutdown().await;
    // SSLRequest / GSSENCRequest are answered with one byte, not a message.
    let mut first = [0u8; 1];
    let negotiation = [[0x04, 0xd2, 0x16, 0x2f], [0x04, 0xd2, 0x16, 0x30]];
    if bytes.len() >= 8
        && bytes[..4] == [0, 0, 0, 8]
        && negotiation.iter().any(|c| bytes[4..8] == *c)
    {
        let left = w.deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok(1)) = tokio::time::timeout(left, w.stream.read(&mut first)).await {
            if first[0] == b'N' || first[0] == b'S' || first[0] == b'G' {
                w.events
                    .push(msg(format!("<byte {}>", first[0] as char), ""));
            } else {
                w.buf.extend_from_slice(&first);
            }
        }
    }
    w.until_closed().await;
}

/// Sends every step, then reads up to the end.
async fn steps(w: &mut Wire, steps: &[Step]) {
    let mut pending = BytesMut::new();
    let mut finished = false;
    for step in steps {
        match step {
            Step::Await(tag) => {
                w.write(&pending.split()).await;
                if !w.until_tag(*tag).await {
                    return;
                }
            }
            Step::Sleep(ms) => {
                w.write(&pending.split()).await;
                tokio::time::sleep(Duration::from_millis(*ms)).await;
            }
            Step::Vanish => {
                w.write(&pending.split()).await;
                let _ = w.stream.set_zero_linger();
                return;
            }
            Step::Truncated { .. } => {
                step.render(&w.side.table, &mut pending);
                w.write(&pending.split()).await;
                let _ = w.stream.shutdown().await;
                finished = true;
                break;
            }
            Step::Terminate => {
                step.render(&w.side.table, &mut pending);
                finished = true;
            }
            _ => step.render(&w.side.table, &mut pending),
        }
    }
    if finished {
        w.write(&pending).await;
        w.until_closed().await;
        return;
    }
    Step::Sync.render("", &mut pending);
    Step::Query(END_MARK.to_owned()).render("", &mut pending);
    w.write(&pending).await;
    w.until_end_mark().await;
}

/// StartupMessage, SCRAM (or md5 / cleartext / trust), the prelude; returns the backend pid.
async fn startup(w: &mut Wire) -> Result<i32, String> {
    let side = w.side.clone();
    let mut out = BytesMut::new();
    let params = [
        ("user", side.user.as_str()),
        ("database", "postgres"),
        ("application_name", side.app.as_str()),
    ];
    frontend::startup_message(params, &mut out).map_err(|e| e.to_string())?;
    w.write(&out).await;
    let mut scram = None;
    let mut pid = 0;
    loop {
        let f = w.frame().await.ok_or("closed during startup")?;
        let mut out = BytesMut::new();
        let mut b = Reader(&f.body[..]);
        match (f.tag, b.i32()) {
            (b'N', _) => {}
            (b'K', p) => pid = p,
            (b'S', _) => {
                let mut b = Reader(&f.body[..]);
                let (name, value) = (b.cstr(), b.cstr());
                w.params.insert(name, value);
            }
            (b'R', request) => authenticate(&side, request, b, &mut scram, &mut out)?,
            (b'E', _) => {
                let code = field(&f.body, b'C').unwrap_or_default();
                let m = field(&f.body, b'M').unwrap_or_default();
                return Err(format!("{code}: {m}"));
            }
            (b'Z', _) => break,
            (tag, _) => return Err(format!("unexpected {:?} during startup", tag as char)),
        }
        if !out.is_empty() {
            w.write(&out).await;
        }
    }
    prelude(w, &side).await?;
    Ok(pid)
}

/// Puts into `out` the client's answer to authentication request `request` (SCRAM-SHA-256,
/// md5 or cleartext; nothing for AuthenticationOk and SASLFinal); `data` follows the request
/// code.
fn authenticate(
    side: &Side,
    request: i32,
    mut data: Reader<'_>,
    scram: &mut Option<ScramSha256>,
    out: &mut BytesMut,
) -> Result<(), String> {
    let password = side.password.as_bytes();
    match request {
        0 => {}
        3 => frontend::password_message(password, out).map_err(|e| e.to_string())?,
        5 => {
            let salt: [u8; 4] = data.take(4).try_into().map_err(|_| "short md5 salt")?;
            let hash =
                postgres_protocol::authentication::md5_hash(side.user.as_bytes(), password, salt);
            frontend::password_message(hash.as_bytes(), out).map_err(|e| e.to_string())?;
        }
        10 => {
            let s = ScramSha256::new(password, ChannelBinding::unsupported());
            frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), out)
                .map_err(|e| e.to_string())?;
            *scram = Some(s);
        }
        11 => {
            let s = scram.as_mut().ok_or("SASL continue before start")?;
            s.update(data.0).map_err(|e| e.to_string())?;
            frontend::sasl_response(s.message(), out).map_err(|e| e.to_string())?;
        }
        12 => {
            let s = scram.as_mut().ok_or("SASL final before start")?;
            s.finish(data.0).map_err(|e| e.to_string())?;
        }
        // Worded as `startup` words any other unexpected message.
        _ => return Err("unexpected 'R' during startup".into()),
    }
    Ok(())
}

/// Sends the side's prelude statements, each waiting for its ReadyForQuery (not recorded by
/// the caller, which clears the events after startup).
async fn prelude(w: &mut Wire, side: &Side) -> Result<(), String> {
    for sql in &side.prelude {
        let mut out = BytesMut::new();
        Step::Query(sql.clone()).render(&side.table, &mut out);
        w.write(&out).await;
        if !w.until_tag(b'Z').await {
            return Err(format!("prelude {sql:?}: no ReadyForQuery"));
        }
    }
    Ok(())
}
