//! Values in PostgreSQL's binary format go through pgroute byte for byte.

use std::error::Error as StdError;
use std::time::SystemTime;

use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Type};

use super::*;

/// Numeric in PostgreSQL's binary format, from a decimal string such as `-123.4500`.
fn numeric_binary(text: &str) -> Vec<u8> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let dscale = frac_part.len() as u16;
    let pad_left = (4 - int_part.len() % 4) % 4;
    let pad_right = (4 - frac_part.len() % 4) % 4;
    let int_padded = format!("{}{int_part}", "0".repeat(pad_left));
    let frac_padded = format!("{frac_part}{}", "0".repeat(pad_right));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
            .collect()
    };
    let mut groups = group(&int_padded);
    let mut weight = groups.len() as i16 - 1;
    groups.extend(group(&frac_padded));
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = BytesMut::new();
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative { 0x4000 } else { 0 });
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
    out.to_vec()
}

/// A value's bytes in binary format, of whatever type the server says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawValue(Vec<u8>);

impl ToSql for RawValue {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawValue(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Typed parameters and results in binary format, through pgroute and back, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_values_round_trip_exactly() {
    let proxy = start("");
    let client = proxy.connect().await;
    integers_at_their_limits_round_trip(&client).await;
    numerics_round_trip(&client).await;
    let values = Values::sample();
    values_round_trip_as_parameters(&client, &values).await;
    values_round_trip_through_a_table(&client, &values).await;
}

async fn integers_at_their_limits_round_trip(client: &Client) {
    let ints = client
        .query_one(
            "SELECT $1::int2, $2::int2, $3::int4, $4::int4, $5::int8, $6::int8, \
             $5::int8::text, inet_server_port()",
            &[
                &i16::MIN,
                &i16::MAX,
                &i32::MIN,
                &i32::MAX,
                &i64::MIN,
                &i64::MAX,
            ],
        )
        .await
        .expect("integers");
    assert_eq!(ints.get::<_, i16>(0), i16::MIN);
    assert_eq!(ints.get::<_, i16>(1), i16::MAX);
    assert_eq!(ints.get::<_, i32>(2), i32::MIN);
    assert_eq!(ints.get::<_, i32>(3), i32::MAX);
    assert_eq!(ints.get::<_, i64>(4), i64::MIN);
    assert_eq!(ints.get::<_, i64>(5), i64::MAX);
    assert_eq!(ints.get::<_, String>(6), i64::MIN.to_string());
    assert!(replica_ports().contains(&ints.get::<_, i32>(7)));
}

/// Numerics sent and received in binary, compared byte for byte with the server's own encoding.
async fn numerics_round_trip(client: &Client) {
    for text in [
        "-12345678901234567890.0123456789012345678901",
        "98765432109876543210987654321098765432109876543210",
        "0.000000000000000000000000000000000001",
        "3.1400",
        "0",
    ] {
        let bin = numeric_binary(text);
        let row = client
            .query_one(
                &format!("SELECT $1::numeric, $1::numeric::text, '{text}'::numeric"),
                &[&RawValue(bin.clone())],
            )
            .await
            .unwrap_or_else(|e| panic!("numeric {text}: {e}"));
        assert_eq!(row.get::<_, String>(1), text, "numeric parameter");
        assert_eq!(
            row.get::<_, RawValue>(0),
            RawValue(bin.clone()),
            "numeric {text} back"
        );
        assert_eq!(
            row.get::<_, RawValue>(2),
            RawValue(bin),
            "numeric {text} from the server"
        );
    }
}

/// Values of the types drivers get wrong most often: UTF-8 text, every byte value, a
/// timestamptz with microseconds, jsonb, arrays with NULLs and quoting, NULLs.
struct Values {
    text: &'static str,
    bytes: Vec<u8>,
    ts: SystemTime,
    jsonb: Vec<u8>,
    int_array: Vec<Option<i32>>,
    text_array: Vec<String>,
    none_int: Option<i32>,
    none_text: Option<String>,
}

impl Values {
    fn sample() -> Values {
        let mut jsonb = vec![1u8];
        jsonb.extend_from_slice(r#"{"a": [1, 2.5, "ü😀"], "b": {"c": null}}"#.as_bytes());
        Values {
            text: "naïve café ☕ 😀🎉 中文字符 日本語 한국어 \u{10FFFF} 'quote' \"dq\" \\ end",
            bytes: (0..=255u8).collect(),
            ts: SystemTime::UNIX_EPOCH + Duration::from_micros(1_709_210_096_789_012),
            jsonb,
            int_array: vec![Some(1), None, Some(i32::MIN), Some(i32::MAX)],
            text_array: ["", "a", "😀", "with,comma", "\"quoted\"", "NULL"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            none_int: None,
            none_text: None,
        }
    }
}

async fn values_round_trip_as_parameters(client: &Client, v: &Values) {
    let Values {
        text,
        bytes,
        ts,
        jsonb,
        int_array,
        text_array,
        none_int,
        none_text,
    } = v;
    let row = client
        .query_one(
            "SELECT $1::text, $2::bytea, $3::timestamptz, $4::jsonb, $5::int4[], $6::text[], \
             $7::int4, $8::text, length($1), md5($2), \
             $3::timestamptz = '2024-02-29 12:34:56.789012+00', $4::jsonb -> 'a' ->> 2",
            &[
                text,
                bytes,
                ts,
                &RawValue(jsonb.clone()),
                int_array,
                text_array,
                none_int,
                none_text,
            ],
        )
        .await
        .expect("binary round trip");
    assert_eq!(row.get::<_, String>(0), *text);
    assert_eq!(row.get::<_, Vec<u8>>(1), *bytes);
    assert_eq!(row.get::<_, SystemTime>(2), *ts);
    assert_eq!(row.get::<_, RawValue>(3), RawValue(jsonb.clone()));
    assert_eq!(row.get::<_, Vec<Option<i32>>>(4), *int_array);
    assert_eq!(row.get::<_, Vec<String>>(5), *text_array);
    assert_eq!(row.get::<_, Option<i32>>(6), None);
    assert_eq!(row.get::<_, Option<String>>(7), None);
    assert_eq!(row.get::<_, i32>(8), text.chars().count() as i32);
    assert_eq!(row.get::<_, String>(9), "e2c865db4162bed963bfaa9ef6ac18f0");
    assert!(row.get::<_, bool>(10), "timestamptz as the server reads it");
    assert_eq!(row.get::<_, String>(11), "ü😀");
}

/// The same values through a write on the primary, and read back.
async fn values_round_trip_through_a_table(client: &Client, v: &Values) {
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_bin; CREATE TABLE proto_bin(t text, b bytea, \
             ts timestamptz, ia int4[], ta text[], n int4)",
        )
        .await
        .expect("create");
    client
        .execute(
            "INSERT INTO proto_bin VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &v.text,
                &v.bytes,
                &v.ts,
                &v.int_array,
                &v.text_array,
                &v.none_int,
            ],
        )
        .await
        .expect("insert");
    let row = client
        .query_one("SELECT t, b, ts, ia, ta, n FROM proto_bin", &[])
        .await
        .expect("read back");
    assert_eq!(row.get::<_, String>(0), v.text);
    assert_eq!(row.get::<_, Vec<u8>>(1), v.bytes);
    assert_eq!(row.get::<_, SystemTime>(2), v.ts);
    assert_eq!(row.get::<_, Vec<Option<i32>>>(3), v.int_array);
    assert_eq!(row.get::<_, Vec<String>>(4), v.text_array);
    assert_eq!(row.get::<_, Option<i32>>(5), None);
}
