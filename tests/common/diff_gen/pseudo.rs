//! pgroute's own statements (`SET`/`SHOW`/`RESET pgroute.*`) among ordinary ones and inside COPY.

use super::*;

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
pub(super) fn pseudo(rng: &mut Rng, extended: bool) -> Vec<Step> {
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

pub(super) fn pseudo_copy(rng: &mut Rng) -> Vec<Step> {
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
