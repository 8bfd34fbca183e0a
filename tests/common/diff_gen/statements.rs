//! Families of plain statements: simple queries, session settings, transactions (in either
//! protocol) and fastpath function calls.

use super::*;

/// Session settings (ParameterStatus, replayed by pgroute on pooled connections), in the
/// simple and the extended protocol, among other statements.
pub(super) fn settings(rng: &mut Rng) -> Vec<Step> {
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

pub(super) fn simple(rng: &mut Rng) -> Vec<Step> {
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

pub(super) fn transaction(rng: &mut Rng) -> Vec<Step> {
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

pub(super) fn function_call(rng: &mut Rng) -> Vec<Step> {
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
