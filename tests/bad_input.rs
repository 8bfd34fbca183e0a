//! Bad input from a client gets a clear error or a closed connection — never a panic, a hang,
//! or trouble for other clients. Each case is checked against a running pgroute in front of a
//! real cluster, and a well-behaved client is served after every one.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::raw::{self, RawConn};
use common::{cluster, start_proxy, TestProxy, PASSWORD, USER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Sends `bytes` on a fresh TCP connection (no startup) and waits for pgroute to close it;
/// returns what it sent back.
async fn before_startup(proxy: &TestProxy, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSE_WITHIN, stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "pgroute neither answered nor closed after {bytes:?}"
    );
    got
}

/// Sends `bytes` on a fresh TCP connection to `port` and returns everything received until
/// the peer closed (a reset, from bytes left unread, counts as closing).
async fn until_closed(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSE_WITHIN, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "port {port} neither answered nor closed after {bytes:?}"
    );
    got
}

/// The SQLSTATE of every ErrorResponse in `bytes` (other messages and lone bytes skipped).
fn sqlstates(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.split('\0')
        .filter_map(|field| field.strip_prefix('C'))
        .filter(|code| code.len() == 5)
        .map(str::to_owned)
        .collect()
}

/// Logs in, sends `bytes`, and expects pgroute to answer with errors and close.
async fn after_login(proxy: &TestProxy, bytes: &[u8]) -> Vec<String> {
    let mut conn = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw login");
    conn.send(bytes).await;
    conn.until_closed()
        .await
        .unwrap_or_else(|e| panic!("after {bytes:?}: {e}"))
}

/// A normal client is still served.
async fn still_serves(proxy: &TestProxy) {
    let client = proxy.connect().await;
    let row = client.query_one("SELECT 41 + 1", &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 42);
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
    out.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_startup_is_refused_and_closed() {
    let proxy = start_proxy(cluster(), "");
    // An HTTP request is not a startup packet: its "length" is absurd, and the connection is
    // closed without a word, as PostgreSQL does.
    let got = before_startup(&proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(got.is_empty(), "reply {got:?}");
    still_serves(&proxy).await;
    // A startup packet for an unknown protocol version gets a FATAL error naming it.
    let mut v9 = BytesMut::new();
    v9.put_i32(8);
    v9.put_i32(9 << 16);
    let got = before_startup(&proxy, &v9).await;
    assert_eq!(got.first(), Some(&b'E'), "reply {got:?}");
    assert!(String::from_utf8_lossy(&got).contains("0A000"), "{got:?}");
    still_serves(&proxy).await;
    // A startup packet that says it is huge is refused without waiting for the bytes.
    let mut huge = BytesMut::new();
    huge.put_i32(1 << 30);
    huge.put_i32(3 << 16);
    let got = before_startup(&proxy, &huge).await;
    assert!(got.is_empty(), "{got:?}");
    still_serves(&proxy).await;
}

/// A startup packet of protocol 3.0 with the given parameters.
fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(3 << 16);
    for (name, value) in params {
        body.put_slice(name.as_bytes());
        body.put_u8(0);
        body.put_slice(value.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::new();
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(&body);
    out.to_vec()
}

fn length_word(len: i32, rest: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(len);
    out.put_slice(rest);
    out.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets_are_closed_as_postgresql_closes_them() {
    let proxy = start_proxy(cluster(), "");
    let primary = cluster().port(0);
    let protocol_3 = (3i32 << 16).to_be_bytes();
    let mut cancel_short = length_word(12, &80877102i32.to_be_bytes());
    cancel_short.extend_from_slice(&7i32.to_be_bytes());
    let silent: Vec<(&str, Vec<u8>)> = vec![
        ("length 7", length_word(7, &protocol_3[..3])),
        ("length 0", length_word(0, &protocol_3)),
        ("negative length", length_word(-8, &protocol_3)),
        // PostgreSQL reads bodies of up to 10000 bytes after the length word.
        ("length 10005", length_word(10005, &protocol_3)),
        ("length 2^30", length_word(1 << 30, &protocol_3)),
        (
            "Terminate before the startup packet",
            [frame(b'X', b""), startup_packet(&[("user", USER)])].concat(),
        ),
        ("short CancelRequest", cancel_short),
    ];
    for (what, bytes) in &silent {
        let direct = until_closed(primary, bytes).await;
        assert!(direct.is_empty(), "{what}: PostgreSQL sent {direct:?}");
        let proxied = until_closed(proxy.port, bytes).await;
        assert!(proxied.is_empty(), "{what}: pgroute sent {proxied:?}");
        still_serves(&proxy).await;
    }
    // Anything sent behind an SSLRequest before its answer: 'N', then FATAL 08P01.
    let ssl = length_word(8, &80877103i32.to_be_bytes());
    let pipelined = [ssl.clone(), startup_packet(&[("user", USER)])].concat();
    for port in [primary, proxy.port] {
        let got = until_closed(port, &pipelined).await;
        assert_eq!(got.first(), Some(&b'N'), "port {port}: {got:?}");
        assert_eq!(sqlstates(&got), ["08P01"], "port {port}: {got:?}");
    }
    // A second SSLRequest after the first was refused: the unknown-protocol FATAL (0A000).
    for port in [primary, proxy.port] {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream.write_all(&ssl).await.expect("write");
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await.expect("answer");
        assert_eq!(&answer, b"N", "port {port}");
        stream.write_all(&ssl).await.expect("write");
        let mut got = Vec::new();
        let _ = tokio::time::timeout(CLOSE_WITHIN, stream.read_to_end(&mut got)).await;
        assert_eq!(sqlstates(&got), ["0A000"], "port {port}: {got:?}");
    }
    still_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_after_login_get_08p01_and_a_close() {
    let proxy = start_proxy(cluster(), "");
    // A message type no frontend sends.
    let codes = after_login(&proxy, &frame(b'Z', b"I")).await;
    assert_eq!(codes, ["08P01"]);
    still_serves(&proxy).await;
    // A negative length.
    let codes = after_login(&proxy, b"Q\xff\xff\xff\xffSELECT 1\0").await;
    assert_eq!(codes, ["08P01"]);
    still_serves(&proxy).await;
    // A Query whose text is not NUL-terminated.
    let codes = after_login(&proxy, &frame(b'Q', b"SELECT 1")).await;
    assert_eq!(codes, ["08P01"]);
    still_serves(&proxy).await;
    // A Bind cut short inside its statement name.
    let codes = after_login(&proxy, &[frame(b'B', b"\0stmt"), frame(b'S', b"")].concat()).await;
    assert_eq!(codes, ["08P01"]);
    still_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_pgroute_cannot_read_and_unknown_statements_get_the_servers_own_errors() {
    let proxy = start_proxy(cluster(), "");
    let mut conn = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw login");
    // Bytes that are not UTF-8 cannot be classified: the query goes to the primary unread and
    // PostgreSQL itself rejects it (22021); the session goes on.
    let replies = conn.exchange(&frame(b'Q', b"SELECT '\xff\xfe'\0")).await;
    let errors = raw::errors(&replies);
    assert_eq!(errors.len(), 1, "{replies:?}");
    assert_eq!(errors[0].0, "22021", "{errors:?}");
    let rows = conn
        .simple_query("SELECT 1")
        .await
        .expect("session goes on");
    assert_eq!(rows, vec![vec![Some("1".to_owned())]]);
    // In another client encoding the same kind of bytes are valid text.
    let mut latin1 = RawConn::connect_with(
        proxy.port,
        USER,
        Some(PASSWORD),
        "postgres",
        &[("client_encoding", "LATIN1")],
    )
    .await
    .expect("raw login");
    let replies = latin1
        .exchange(&frame(b'Q', b"SELECT length('caf\xe9')\0"))
        .await;
    assert_eq!(
        raw::rows(&replies),
        vec![vec![Some("4".to_owned())]],
        "{replies:?}"
    );
    // Executing a statement nobody prepared: PostgreSQL's own 26000, and the session goes on.
    let mut conn = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw login");
    let mut out = BytesMut::new();
    raw::bind_execute(&mut out, "never_prepared");
    raw::sync(&mut out);
    let replies = conn.exchange(&out).await;
    let errors = raw::errors(&replies);
    assert_eq!(errors.len(), 1, "{replies:?}");
    assert_eq!(errors[0].0, "26000");
    assert!(errors[0].1.contains("never_prepared"), "{errors:?}");
    let rows = conn
        .simple_query("SELECT 1")
        .await
        .expect("session goes on");
    assert_eq!(rows, vec![vec![Some("1".to_owned())]]);
    still_serves(&proxy).await;
}
