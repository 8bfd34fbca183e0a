//! Families that end the connection: Terminate, a final message cut short, a client that
//! vanishes, a server that ends the session with FATAL.

use super::*;

pub(super) fn terminate(rng: &mut Rng) -> Vec<Step> {
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

pub(super) fn truncated(rng: &mut Rng) -> Vec<Step> {
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

pub(super) fn vanish(rng: &mut Rng) -> Vec<Step> {
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

pub(super) fn server_fatal(rng: &mut Rng) -> Vec<Step> {
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
