//! Handing a read-your-writes token from one connection to another.
//!
//! pgroute guarantees that a session reads its own writes. When the reader is a different
//! connection (another service, a worker picking up a job, the next HTTP request on another
//! pooled connection), the writer passes its token along:
//!
//! 1. connection A writes; pgroute reports the token as ParameterStatus `pgroute.lsn`, and
//!    `SHOW pgroute.lsn` answers it (drivers rarely expose ParameterStatus, so this uses SHOW);
//! 2. connection B runs `SET pgroute.min_lsn = '<token>'` (or prefixes one statement with
//!    `/* pgroute.min_lsn=<token> */`): its reads now go only to a replica that has replayed the
//!    write, or to the primary.
//!
//! Run `pgroute demo` in another terminal, then:
//!
//! ```text
//! cargo run --example causal_token
//! PGROUTE_URL="host=… port=… user=… password=… dbname=…" cargo run --example causal_token
//! ```
//!
//! `SHOW` and `SET` of `pgroute.*` are answered by pgroute itself and must be sent as simple
//! queries (`simple_query`, `batch_execute`).

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const DEFAULT_URL: &str = "host=127.0.0.1 port=6432 user=app password=app-secret dbname=postgres";

#[tokio::main]
async fn main() -> Result<(), tokio_postgres::Error> {
    let url = std::env::var("PGROUTE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let writer = connect(&url).await?;
    let reader = connect(&url).await?;

    // Connection A: a write, which pgroute sends to the primary.
    writer
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS causal_token_demo \
             (id bigserial PRIMARY KEY, note text NOT NULL)",
        )
        .await?;
    let row = writer
        .query_one(
            "INSERT INTO causal_token_demo (note) VALUES ($1) \
             RETURNING id, inet_server_port(), pg_is_in_recovery()",
            &[&"written on connection A"],
        )
        .await?;
    let id: i64 = row.get(0);
    println!(
        "A: INSERT id {id} ran on {}",
        server(row.get(1), row.get(2))
    );

    // A's token: the primary's WAL position after the write committed.
    let token = show(&writer, "SHOW pgroute.lsn").await?;
    println!("A: SHOW pgroute.lsn = {token}");

    // Connection B never wrote: without the token it may read from a replica that has not
    // replayed A's write yet. With it, pgroute only uses a replica that has.
    reader
        .batch_execute(&format!("SET pgroute.min_lsn = '{token}'"))
        .await?;
    println!("B: SET pgroute.min_lsn = '{token}'");
    let row = reader
        .query_opt(
            "SELECT note, inet_server_port(), pg_is_in_recovery() \
             FROM causal_token_demo WHERE id = $1",
            &[&id],
        )
        .await?;
    match row {
        Some(row) => {
            let note: &str = row.get(0);
            println!(
                "B: SELECT id {id} ran on {}: {note:?}",
                server(row.get(1), row.get(2))
            );
        }
        None => println!("B: SELECT id {id} did not find the row (stale read: is this pgroute?)"),
    }

    // The same for one statement only, on a connection that did not SET anything.
    let once = connect(&url).await?;
    let sql = format!(
        "/* pgroute.min_lsn={token} */ \
         SELECT count(*), inet_server_port() FROM causal_token_demo WHERE id = {id}"
    );
    let answer = show(&once, &sql).await?;
    println!("C: hinted SELECT answered (count, port) = ({answer})");
    Ok(())
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection error: {e}");
        }
    });
    Ok(client)
}

/// The first row of a simple query, its columns joined with ", ".
async fn show(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    for message in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = message {
            let columns: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap_or("")).collect();
            return Ok(columns.join(", "));
        }
    }
    Ok(String::new())
}

fn server(port: i32, in_recovery: bool) -> String {
    let role = if in_recovery {
        "a replica"
    } else {
        "the primary"
    };
    format!("port {port} ({role})")
}
