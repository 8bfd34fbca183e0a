//! COPY families: FROM STDIN in the simple and the extended protocol (pipelined or not, with
//! odd Syncs among the data) and TO STDOUT.

use super::*;

/// COPY data for `rows` rows (ids from 100, one bad row maybe), split at random points.
pub(super) fn copy_rows(rng: &mut Rng, csv: bool) -> Vec<Step> {
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

pub(super) fn copy_from_sql(csv: bool) -> String {
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
pub(super) fn copy_in_simple(rng: &mut Rng, odd_syncs: bool) -> Vec<Step> {
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

pub(super) fn copy_out(rng: &mut Rng) -> Vec<Step> {
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
pub(super) fn copy_extended(rng: &mut Rng, pipelined: bool) -> Vec<Step> {
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
