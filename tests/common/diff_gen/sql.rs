//! The statement pickers and message helpers the families share.

use super::*;

pub(super) fn q(sql: impl Into<String>) -> Step {
    Step::Query(sql.into())
}

pub(super) fn write_sql(rng: &mut Rng) -> String {
    let id = 1 + rng.below(12);
    match rng.below(4) {
        0 | 1 => format!("INSERT INTO {{t}} VALUES ({id}, 'w{id}')"),
        2 => format!("UPDATE {{t}} SET v = v || 'u' WHERE id = {id}"),
        _ => format!("DELETE FROM {{t}} WHERE id = {id}"),
    }
}

pub(super) fn read_sql(rng: &mut Rng) -> String {
    rng.pick(&[
        "SELECT id, v FROM {t} ORDER BY id",
        "SELECT count(*) FROM {t}",
        "SELECT generate_series(1, 3) AS n",
        "SELECT NULL::int AS a, 'x'::text AS b, 1.5::numeric AS c",
        "SELECT max(id) FROM {t}",
    ])
    .to_string()
}

pub(super) fn bad_sql(rng: &mut Rng) -> String {
    rng.pick(&[
        "SELECT 1/0",
        "SELECT * FROM {t}_missing",
        "SELEC 1",
        "INSERT INTO {t} VALUES (1, 'dup')",
        "SELECT 'x'::int",
    ])
    .to_string()
}

pub(super) fn setting_sql(rng: &mut Rng) -> String {
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

pub(super) fn any_sql(rng: &mut Rng) -> String {
    match rng.below(8) {
        0..=2 => write_sql(rng),
        3..=5 => read_sql(rng),
        _ => bad_sql(rng),
    }
}

/// Unnamed Parse + Bind + Execute of `sql`.
pub(super) fn ext(sql: &str) -> Vec<Step> {
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
