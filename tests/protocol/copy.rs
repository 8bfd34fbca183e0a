//! COPY in and out, text and binary, through the simple protocol and psql, and a failed COPY.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};

use super::*;

fn copy_rows(n: i32) -> String {
    (1..=n).map(|i| format!("{i}\tname {i} ✓\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_of_10000_rows() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_copy; CREATE TABLE proto_copy(id int PRIMARY KEY, name text)",
        )
        .await
        .expect("create");
    let data = copy_rows(10_000);
    let sink = client
        .copy_in::<_, Bytes>("COPY proto_copy FROM STDIN")
        .await
        .expect("COPY FROM STDIN");
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(7_000) {
        sink.send(Bytes::copy_from_slice(chunk))
            .await
            .expect("CopyData");
    }
    let copied = tokio::time::timeout(PATIENCE, sink.finish())
        .await
        .expect("COPY finished within 10 s")
        .expect("COPY");
    assert_eq!(copied, 10_000);
    assert_eq!(on_primary("SELECT count(*) FROM proto_copy"), "10000");
    // The session goes on, and reads its own copy.
    let count: i64 = tokio::time::timeout(
        PATIENCE,
        client.query_one("SELECT count(*) FROM proto_copy", &[]),
    )
    .await
    .expect("read after COPY within 10 s")
    .expect("the first statement after COPY FROM STDIN (extended protocol)")
    .get(0);
    assert_eq!(count, 10_000);

    let stream = client
        .copy_out("COPY (SELECT * FROM proto_copy ORDER BY id) TO STDOUT")
        .await
        .expect("COPY TO STDOUT");
    let chunks: Vec<Bytes> = tokio::time::timeout(
        PATIENCE,
        stream.map(|c| c.expect("CopyData")).collect::<Vec<_>>(),
    )
    .await
    .expect("COPY out within 10 s");
    let out: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(out).expect("UTF-8"), data);
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("after copy out")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_binary_format() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_copy_bin; CREATE TABLE proto_copy_bin(id int, v bigint)",
        )
        .await
        .expect("create");
    // PGCOPY header, then per row: field count, then (length, value) per field; -1 trailer.
    let mut buf = BytesMut::new();
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
    for i in 1..=10_000i32 {
        buf.put_i16(2);
        buf.put_i32(4);
        buf.put_i32(i);
        buf.put_i32(8);
        buf.put_i64(i64::from(i) * 1_000_000_007);
    }
    buf.put_i16(-1);
    let sink = client
        .copy_in::<_, Bytes>("COPY proto_copy_bin FROM STDIN (FORMAT binary)")
        .await
        .expect("COPY binary");
    futures::pin_mut!(sink);
    sink.send(buf.freeze()).await.expect("CopyData");
    let n = tokio::time::timeout(PATIENCE, sink.finish())
        .await
        .expect("within 10 s")
        .expect("COPY");
    assert_eq!(n, 10_000);
    assert_eq!(
        on_primary("SELECT count(*), sum(v) FROM proto_copy_bin"),
        format!("10000|{}", (1..=10_000i64).sum::<i64>() * 1_000_000_007)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_copy_in_reports_the_error_and_the_session_goes_on() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_copy_bad; CREATE TABLE proto_copy_bad(id int, name text)",
        )
        .await
        .expect("create");
    let mut data = copy_rows(500);
    data.push_str("not-a-number\tbad\n");
    data.push_str(&copy_rows(500));
    let result = tokio::time::timeout(PATIENCE, async {
        let sink = client
            .copy_in::<_, Bytes>("COPY proto_copy_bad FROM STDIN")
            .await?;
        futures::pin_mut!(sink);
        for chunk in data.as_bytes().chunks(1_000) {
            sink.send(Bytes::copy_from_slice(chunk)).await?;
        }
        sink.finish().await
    })
    .await
    .expect("COPY answered within 10 s");
    let err = result.expect_err("a bad row fails the COPY");
    assert_eq!(
        code_of(&err),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{err}"
    );
    assert_eq!(on_primary("SELECT count(*) FROM proto_copy_bad"), "0");
    for i in 0..10 {
        let row = tokio::time::timeout(
            PATIENCE,
            client.query_one("SELECT count(*), $1::int FROM proto_copy_bad", &[&i]),
        )
        .await
        .unwrap_or_else(|_| panic!("statement {i} after the failed COPY answered within 10 s"))
        .unwrap_or_else(|e| panic!("statement {i} after the failed COPY: {e}"));
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>(1)), (0, i));
    }
    // A write, too, and a simple query.
    client
        .execute("INSERT INTO proto_copy_bad VALUES (1, 'ok')", &[])
        .await
        .expect("insert after the failed COPY");
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM proto_copy_bad").await,
        "1"
    );
}

/// psql's `\copy` in both directions (simple-protocol COPY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_in_and_out() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let proxy = start("");
    let url = proxy.url();
    let (ok, _, err) = common::psql(
        &proxy,
        &[
            "-c",
            "DROP TABLE IF EXISTS proto_psql_copy; CREATE TABLE proto_psql_copy(id int, name text)",
        ],
    );
    assert!(ok, "{err}");
    let data = copy_rows(2_000);
    let input = data.clone();
    let url_in = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("psql")
            .arg(&url_in)
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "\\copy proto_psql_copy FROM STDIN",
            ])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("feed psql");
        child.wait_with_output().expect("psql")
    })
    .await
    .expect("psql task");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(on_primary("SELECT count(*) FROM proto_psql_copy"), "2000");
    let (ok, copied, err) = common::psql(
        &proxy,
        &[
            "-c",
            "\\copy (SELECT * FROM proto_psql_copy ORDER BY id) TO STDOUT",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(format!("{copied}\n"), data);
}
