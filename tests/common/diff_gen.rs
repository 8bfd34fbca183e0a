//! Case generators of the differential test, one per family. Each table starts as
//! `(1,'a'), (2,'b'), (3,'c')` with `id int primary key, v text`.

use super::diff_case::{Rng, Step};

/// Every family, in the order cases cycle through them.
pub const FAMILIES: &[&str] = &[
    "simple",
    "settings",
    "transaction",
    "extended",
    "pipelined_groups",
    "reordered",
    "copy_in_simple",
    "copy_out",
    "copy_extended",
    "copy_extended_pipelined",
    "sync_in_copy",
    "function_call",
    "terminate",
    "truncated",
    "vanish",
    "server_fatal",
    "pseudo",
    "pseudo_extended",
    "pseudo_copy",
    "startup",
];

/// `int4pl(int4, int4)`, a built-in whose oid is fixed (checked by the test at start).
pub const INT4PL_OID: u32 = 177;

/// The steps of one case of `family`.
pub fn generate(family: &str, rng: &mut Rng) -> Vec<Step> {
    match family {
        "simple" => simple(rng),
        "settings" => settings(rng),
        "transaction" => transaction(rng),
        "extended" => {
            let mut s = extended_group(rng, 30);
            s.push(Step::Sync);
            s
        }
        "pipelined_groups" => pipelined_groups(rng),
        "reordered" => reordered(rng),
        "copy_in_simple" => copy_in_simple(rng, false),
        "copy_out" => copy_out(rng),
        "copy_extended" => copy_extended(rng, false),
        "copy_extended_pipelined" => copy_extended(rng, true),
        "sync_in_copy" => copy_in_simple(rng, true),
        "function_call" => function_call(rng),
        "terminate" => terminate(rng),
        "truncated" => truncated(rng),
        "vanish" => vanish(rng),
        "server_fatal" => server_fatal(rng),
        "pseudo" => pseudo(rng, false),
        "pseudo_extended" => pseudo(rng, true),
        "pseudo_copy" => pseudo_copy(rng),
        "startup" => startup(rng),
        other => panic!("no generator for family {other:?}"),
    }
}

fn q(sql: impl Into<String>) -> Step {
    Step::Query(sql.into())
}

fn write_sql(rng: &mut Rng) -> String {
    let id = 1 + rng.below(12);
    match rng.below(4) {
        0 | 1 => format!("INSERT INTO {{t}} VALUES ({id}, 'w{id}')"),
        2 => format!("UPDATE {{t}} SET v = v || 'u' WHERE id = {id}"),
        _ => format!("DELETE FROM {{t}} WHERE id = {id}"),
    }
}

fn read_sql(rng: &mut Rng) -> String {
    rng.pick(&[
        "SELECT id, v FROM {t} ORDER BY id",
        "SELECT count(*) FROM {t}",
        "SELECT generate_series(1, 3) AS n",
        "SELECT NULL::int AS a, 'x'::text AS b, 1.5::numeric AS c",
        "SELECT max(id) FROM {t}",
    ])
    .to_string()
}

fn bad_sql(rng: &mut Rng) -> String {
    rng.pick(&[
        "SELECT 1/0",
        "SELECT * FROM {t}_missing",
        "SELEC 1",
        "INSERT INTO {t} VALUES (1, 'dup')",
        "SELECT 'x'::int",
    ])
    .to_string()
}

fn setting_sql(rng: &mut Rng) -> String {
    rng.pick(&[
        "SET application_name = '{t}_renamed'",
        "SET DateStyle = 'ISO, DMY'",
        "SET TimeZone = 'UTC'",
        "SET work_mem = '8MB'",
        "RESET ALL",
        "SHOW DateStyle",
    ])
    .to_string()
}

fn any_sql(rng: &mut Rng) -> String {
    match rng.below(8) {
        0..=2 => write_sql(rng),
        3..=5 => read_sql(rng),
        _ => bad_sql(rng),
    }
}

/// Session settings (ParameterStatus, replayed by pgroute on pooled connections), in the
/// simple and the extended protocol, among other statements.
fn settings(rng: &mut Rng) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let sql = if rng.chance(60) {
            setting_sql(rng)
        } else {
            any_sql(rng)
        };
        if rng.chance(50) {
            steps.push(q(sql));
        } else {
            steps.extend(ext(&sql));
            steps.push(Step::Sync);
        }
        if rng.chance(40) {
            steps.push(Step::Await(b'Z'));
        }
    }
    steps
}

fn simple(rng: &mut Rng) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..1 + rng.below(5) {
        let sql = match rng.below(8) {
            0 => format!("{}; {}", any_sql(rng), any_sql(rng)),
            1 => rng.pick(&["", " ; ", "-- nothing"]).to_string(),
            2 => "LISTEN {t}; NOTIFY {t}, 'hi'; UNLISTEN {t}".into(),
            _ => any_sql(rng),
        };
        steps.push(q(sql));
        if rng.chance(40) {
            steps.push(Step::Await(b'Z'));
        }
    }
    steps
}

/// Unnamed Parse + Bind + Execute of `sql`.
fn ext(sql: &str) -> Vec<Step> {
    vec![
        Step::Parse {
            name: String::new(),
            sql: sql.to_owned(),
        },
        Step::Bind {
            portal: String::new(),
            stmt: String::new(),
            params: vec![],
        },
        Step::Execute {
            portal: String::new(),
            max_rows: 0,
        },
    ]
}

fn transaction(rng: &mut Rng) -> Vec<Step> {
    let extended = rng.chance(40);
    let mut sqls = vec![rng
        .pick(&["BEGIN", "START TRANSACTION", "BEGIN READ ONLY"])
        .to_string()];
    for _ in 0..1 + rng.below(4) {
        sqls.push(match rng.below(6) {
            0 => bad_sql(rng),
            1 => "SAVEPOINT s1".into(),
            2 => "ROLLBACK TO SAVEPOINT s1".into(),
            3 => "SET LOCAL work_mem = '2MB'".into(),
            _ => write_sql(rng),
        });
    }
    if rng.chance(85) {
        sqls.push(
            rng.pick(&["COMMIT", "ROLLBACK", "END", "COMMIT AND CHAIN"])
                .to_string(),
        );
    }
    if rng.chance(30) {
        sqls.push("COMMIT".into());
    }
    let mut steps = Vec::new();
    for sql in sqls {
        if extended {
            steps.extend(ext(&sql));
            if rng.chance(50) {
                steps.push(Step::Sync);
            }
        } else {
            steps.push(q(sql));
        }
    }
    if extended {
        steps.push(Step::Sync);
    }
    steps
}

/// An extended-protocol batch without its Sync; `fail_percent` of its statements fail.
fn extended_group(rng: &mut Rng, fail_percent: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    for i in 0..1 + rng.below(3) {
        let named = rng.chance(40);
        let name = if named {
            format!("s{i}")
        } else {
            String::new()
        };
        let (sql, params) = match rng.below(4) {
            0 => (
                "INSERT INTO {t} VALUES ($1, $2)".to_string(),
                vec![Some((20 + rng.below(8)).to_string()), Some("p".into())],
            ),
            1 => (
                "SELECT v FROM {t} WHERE id = $1".to_string(),
                vec![Some("2".into())],
            ),
            _ if rng.chance(fail_percent) => (bad_sql(rng), vec![]),
            _ => (any_sql(rng), vec![]),
        };
        steps.push(Step::Parse {
            name: name.clone(),
            sql,
        });
        if rng.chance(30) {
            steps.push(Step::Describe {
                kind: b'S',
                name: name.clone(),
            });
        }
        steps.push(Step::Bind {
            portal: String::new(),
            stmt: name.clone(),
            params,
        });
        if rng.chance(30) {
            steps.push(Step::Describe {
                kind: b'P',
                name: String::new(),
            });
        }
        let max_rows = if rng.chance(25) { 1 } else { 0 };
        steps.push(Step::Execute {
            portal: String::new(),
            max_rows,
        });
        if max_rows == 1 && rng.chance(50) {
            steps.push(Step::Execute {
                portal: String::new(),
                max_rows: 0,
            });
        }
        if rng.chance(15) {
            steps.push(Step::Flush);
        }
        if named && rng.chance(40) {
            steps.push(Step::Close { kind: b'S', name });
        }
    }
    steps
}

fn pipelined_groups(rng: &mut Rng) -> Vec<Step> {
    let groups = 2 + rng.below(3);
    let failing = rng.below(groups);
    let in_txn = rng.chance(40);
    let mut steps = Vec::new();
    for g in 0..groups {
        if in_txn && g == 0 {
            steps.extend(ext("BEGIN"));
        }
        steps.extend(extended_group(rng, 0));
        if g == failing {
            steps.extend(ext(&bad_sql(rng)));
        }
        if in_txn && g == groups - 1 {
            steps.extend(ext("COMMIT"));
        }
        steps.push(Step::Sync);
    }
    steps
}

/// A valid sequence with steps swapped, duplicated or dropped.
fn reordered(rng: &mut Rng) -> Vec<Step> {
    let mut steps = match rng.below(3) {
        0 => transaction(rng),
        1 => pipelined_groups(rng),
        _ => copy_extended(rng, true),
    };
    for _ in 0..1 + rng.below(3) {
        if steps.len() < 2 {
            break;
        }
        let i = rng.below(steps.len() - 1);
        match rng.below(3) {
            0 => steps.swap(i, i + 1),
            1 => {
                let s = steps[i].clone();
                steps.insert(i, s);
            }
            _ => {
                steps.remove(i);
            }
        }
    }
    steps
}

/// COPY data for `rows` rows (ids from 100, one bad row maybe), split at random points.
fn copy_rows(rng: &mut Rng, csv: bool) -> Vec<Step> {
    let mut text = String::new();
    let base = 100 + rng.below(50);
    for i in 0..1 + rng.below(4) {
        let (id, v) = if rng.chance(10) {
            ("x".to_string(), "bad")
        } else {
            ((base + i).to_string(), "c")
        };
        text.push_str(&if csv {
            format!("{id},{v}\n")
        } else {
            format!("{id}\t{v}\n")
        });
    }
    let mut chunks = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let cut = 1 + rng.below(rest.len());
        let cut = if rng.chance(50) { rest.len() } else { cut };
        chunks.push(Step::CopyData(rest[..cut].to_owned()));
        rest = &rest[cut..];
    }
    chunks
}

fn copy_from_sql(csv: bool) -> String {
    if csv {
        "COPY {t} (id, v) FROM STDIN (FORMAT csv)".into()
    } else {
        "COPY {t} (id, v) FROM STDIN".into()
    }
}

fn copy_end(rng: &mut Rng) -> Step {
    if rng.chance(15) {
        Step::CopyFail("client gave up".into())
    } else {
        Step::CopyDone
    }
}

/// COPY FROM STDIN as a simple Query; with `odd_syncs`, Sync and Flush among the data.
fn copy_in_simple(rng: &mut Rng, odd_syncs: bool) -> Vec<Step> {
    let csv = rng.chance(30);
    let mut steps = vec![q(copy_from_sql(csv))];
    if rng.chance(50) {
        steps.push(Step::Await(b'G'));
    }
    for chunk in copy_rows(rng, csv) {
        if odd_syncs && rng.chance(50) {
            steps.push(if rng.chance(70) {
                Step::Sync
            } else {
                Step::Flush
            });
        }
        steps.push(chunk);
    }
    if odd_syncs && rng.chance(50) {
        steps.push(Step::Sync);
    }
    steps.push(copy_end(rng));
    steps.push(q("SELECT count(*) FROM {t}"));
    steps
}

fn copy_out(rng: &mut Rng) -> Vec<Step> {
    let sql = rng.pick(&[
        "COPY {t} TO STDOUT",
        "COPY (SELECT id, v FROM {t} ORDER BY id) TO STDOUT (FORMAT csv, HEADER)",
        "COPY (SELECT generate_series(1, 5)) TO STDOUT",
        "COPY (SELECT 1/0) TO STDOUT",
    ]);
    let mut steps = Vec::new();
    if rng.chance(50) {
        steps.push(q(sql.to_string()));
    } else {
        steps.extend(ext(sql));
        steps.push(Step::Sync);
    }
    if rng.chance(40) {
        steps.push(q(read_sql(rng)));
    }
    steps
}

/// COPY FROM STDIN through Parse/Bind/Execute. `pipelined`: the data follows the Execute
/// before any CopyInResponse, with Sync/Flush in odd places; otherwise the client waits.
fn copy_extended(rng: &mut Rng, pipelined: bool) -> Vec<Step> {
    let csv = rng.chance(30);
    let mut steps = ext(&copy_from_sql(csv));
    if pipelined {
        if rng.chance(30) {
            steps.push(Step::Flush);
        }
        if rng.chance(20) {
            steps.push(Step::Sync);
        }
    } else {
        steps.push(Step::Flush);
        steps.push(Step::Await(b'G'));
    }
    steps.extend(copy_rows(rng, csv));
    steps.push(copy_end(rng));
    steps.push(Step::Sync);
    if rng.chance(50) {
        steps.extend(ext("SELECT count(*) FROM {t}"));
        steps.push(Step::Sync);
    }
    steps
}

fn function_call(rng: &mut Rng) -> Vec<Step> {
    let mut steps = Vec::new();
    if rng.chance(30) {
        steps.push(q("BEGIN"));
    }
    for _ in 0..1 + rng.below(3) {
        let (oid, args) = match rng.below(5) {
            0 => (INT4PL_OID, vec![None, Some("3".into())]),
            1 => (1, vec![]),
            2 => (INT4PL_OID, vec![Some("x".into()), Some("3".into())]),
            _ => (INT4PL_OID, vec![Some("2".into()), Some("3".into())]),
        };
        steps.push(Step::FunctionCall { oid, args });
        if rng.chance(30) {
            steps.push(q(read_sql(rng)));
        }
    }
    if rng.chance(30) {
        steps.push(q("COMMIT"));
    }
    steps
}

fn terminate(rng: &mut Rng) -> Vec<Step> {
    let mut steps = match rng.below(3) {
        0 => simple(rng),
        1 => transaction(rng),
        _ => {
            let mut s = extended_group(rng, 30);
            if rng.chance(50) {
                s.push(Step::Sync);
            }
            s
        }
    };
    let at = rng.below(steps.len() + 1);
    steps.insert(at, Step::Terminate);
    steps
}

fn truncated(rng: &mut Rng) -> Vec<Step> {
    let mut steps = if rng.chance(50) {
        simple(rng)
    } else {
        Vec::new()
    };
    let last = match rng.below(4) {
        0 => q(write_sql(rng)),
        1 => Step::Parse {
            name: "t1".into(),
            sql: read_sql(rng),
        },
        2 => Step::Bind {
            portal: String::new(),
            stmt: String::new(),
            params: vec![],
        },
        _ => {
            steps.push(q(copy_from_sql(false)));
            steps.push(Step::Await(b'G'));
            Step::CopyData("7\tseven\n".into())
        }
    };
    let mut whole = bytes::BytesMut::new();
    last.render("diff_table_name", &mut whole);
    let keep = 1 + rng.below(whole.len().min(12) - 1);
    steps.push(Step::Truncated {
        keep,
        step: Box::new(last),
    });
    steps
}

fn vanish(rng: &mut Rng) -> Vec<Step> {
    let mut steps = match rng.below(4) {
        0 => vec![
            q("BEGIN"),
            q(write_sql(rng)),
            Step::Await(b'Z'),
            Step::Await(b'Z'),
        ],
        1 => {
            let mut s = vec![q(copy_from_sql(false)), Step::Await(b'G')];
            s.extend(copy_rows(rng, false));
            s
        }
        2 => {
            let mut s = ext(&copy_from_sql(false));
            s.push(Step::Flush);
            s.push(Step::Await(b'G'));
            s.extend(copy_rows(rng, false));
            s
        }
        _ => extended_group(rng, 30),
    };
    if rng.chance(40) {
        steps.push(Step::Sleep(50));
    }
    steps.push(Step::Vanish);
    steps
}

fn server_fatal(rng: &mut Rng) -> Vec<Step> {
    match rng.below(3) {
        0 => vec![
            q("SELECT pg_terminate_backend(pg_backend_pid())"),
            q("SELECT 1"),
        ],
        1 => {
            let mut s = ext("SELECT pg_terminate_backend(pg_backend_pid())");
            s.push(Step::Sync);
            s
        }
        _ => vec![
            q("BEGIN"),
            q("SET LOCAL idle_in_transaction_session_timeout = '100ms'"),
            Step::Await(b'Z'),
            Step::Await(b'Z'),
            Step::Sleep(400),
            q("SELECT 1"),
        ],
    }
}

fn pseudo_sql(rng: &mut Rng) -> String {
    rng.pick(&[
        "SET pgroute.max_lag = '1s'",
        "SHOW pgroute.lsn",
        "RESET pgroute.max_lag",
        "SET pgroute.max_lag TO '250ms'",
    ])
    .to_string()
}

/// pgroute's own statements among ordinary ones. On the direct side the test sets the
/// placeholder `pgroute.lsn` first, so PostgreSQL answers SHOW with a row as pgroute does.
fn pseudo(rng: &mut Rng, extended: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let sql = if rng.chance(50) {
            pseudo_sql(rng)
        } else {
            write_sql(rng)
        };
        if extended {
            steps.extend(ext(&sql));
            steps.push(Step::Sync);
        } else {
            steps.push(q(sql));
        }
    }
    steps
}

fn pseudo_copy(rng: &mut Rng) -> Vec<Step> {
    let mut steps = vec![q(copy_from_sql(false)), Step::Await(b'G')];
    let rows = copy_rows(rng, false);
    let at = rng.below(rows.len() + 1);
    for (i, row) in rows.into_iter().enumerate() {
        if i == at {
            steps.push(q(pseudo_sql(rng)));
        }
        steps.push(row);
    }
    steps.push(Step::CopyDone);
    steps.push(q("SELECT count(*) FROM {t}"));
    steps
}

fn startup_packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// A StartupMessage (or something in its place) that is wrong in one way.
fn startup(rng: &mut Rng) -> Vec<Step> {
    let good = [("user", "app"), ("database", "postgres")];
    let bytes = match rng.below(11) {
        0 => vec![0, 0, 0, 4],
        1 => vec![0, 0, 0, 2, 0, 3],
        2 => {
            let mut b = vec![0x00, 0x01, 0x00, 0x00];
            b.extend(vec![0; 12]);
            b
        }
        3 => startup_packet(0x0002_0000, &good),
        4 => startup_packet(0x0003_0000, &[("database", "postgres")]),
        5 => {
            let mut b = startup_packet(0x0003_0000, &good);
            b.truncate(4 + rng.below(b.len() - 4));
            b
        }
        6 => {
            let mut b = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
            b.extend_from_slice(&rng.next().to_be_bytes());
            b
        }
        7 => vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 4],
        8 => startup_packet(0x0003_0063, &good),
        9 => startup_packet(0x0003_0000, &[good[0], good[1], ("_pq_.diff", "1")]),
        _ => {
            let mut b = startup_packet(0x0003_0000, &good);
            let n = b.len() - 1;
            b[n] = b'x';
            b
        }
    };
    vec![Step::RawStartup(bytes)]
}
