//! Extended-protocol families: one batch, pipelined groups around an error, and valid
//! sequences reordered.

use super::*;

/// An extended-protocol batch without its Sync; `fail_percent` of its statements fail.
pub(super) fn extended_group(rng: &mut Rng, fail_percent: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    for i in 0..1 + rng.below(3) {
        let named = rng.chance(40);
        let name = if named {
            format!("s{i}")
        } else {
            String::new()
        };
        let (sql, params) = statement(rng, fail_percent);
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

/// The SQL and text parameters of one statement of a batch; `fail_percent` of those without
/// parameters fail.
fn statement(rng: &mut Rng, fail_percent: usize) -> (String, Vec<Option<String>>) {
    match rng.below(4) {
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
    }
}

pub(super) fn pipelined_groups(rng: &mut Rng) -> Vec<Step> {
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
pub(super) fn reordered(rng: &mut Rng) -> Vec<Step> {
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
