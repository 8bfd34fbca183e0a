//! Session parameters (startup parameters and SET) that follow a client across pooled server
//! connections: each side keeps name → value-as-SQL-text, and the difference becomes one SET/RESET
//! string sent in front of the client's next statement on that connection.

use std::collections::BTreeMap;

use crate::classify::ParamChange;

/// Parameter values keyed by lower-case name; values are SQL text ready to follow `SET name TO`.
pub type Params = BTreeMap<String, String>;

/// Startup parameters that are not session settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "replication", "options"];

/// A string value as an SQL literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// An identifier as SQL (quoted, so names like `DateStyle` or `pgroute.min_lsn` survive).
fn ident(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The session parameters a StartupMessage asks for, including `-c name=value` in `options`.
pub fn from_startup(startup: &BTreeMap<String, String>) -> Params {
    let mut params = Params::new();
    for (name, value) in startup {
        if !NOT_SETTINGS.contains(&name.as_str()) && !is_pgroute(name) {
            params.insert(name.to_lowercase(), literal(value));
        }
    }
    if let Some(options) = startup.get("options") {
        let mut words = options.split_whitespace();
        while let Some(word) = words.next() {
            let setting = match word {
                "-c" => words.next(),
                w => w.strip_prefix("--").or_else(|| w.strip_prefix("-c")),
            };
            if let Some((name, value)) = setting.and_then(|s| s.split_once('=')) {
                params.insert(name.replace('-', "_").to_lowercase(), literal(value));
            }
        }
    }
    params
}

/// `default_transaction_read_only` is on for this session: a plain `BEGIN` opens a read-only
/// transaction.
pub fn read_only_by_default(params: &Params) -> bool {
    params
        .get("default_transaction_read_only")
        .is_some_and(|v| {
            let v = v.trim_matches('\'').to_ascii_lowercase();
            matches!(v.as_str(), "on" | "true" | "yes" | "1" | "t" | "y")
        })
}

/// `pgroute.*` settings belong to the proxy, not to the servers.
pub fn is_pgroute(name: &str) -> bool {
    name.len() > 8 && name[..8].eq_ignore_ascii_case("pgroute.")
}

/// Applies the changes a successful statement made (`pgroute.*` ones are the session's own).
pub fn apply(params: &mut Params, changes: &[ParamChange], startup: &Params) {
    for change in changes {
        match change {
            ParamChange::Set { name, .. } | ParamChange::Reset { name } if is_pgroute(name) => {}
            ParamChange::Set { name, value } if value.eq_ignore_ascii_case("default") => {
                reset(params, name, startup)
            }
            ParamChange::Set { name, value } => {
                params.insert(name.clone(), value.clone());
            }
            ParamChange::Reset { name } => reset(params, name, startup),
            ParamChange::ResetAll => *params = startup.clone(),
        }
    }
}

/// Settings whose text form is a list of (possibly quoted) identifiers: their
/// `current_setting` text is already valid after `SET name TO`, and quoting it whole would make
/// one element of it (GUC_LIST_QUOTE in PostgreSQL's guc tables).
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "local_preload_libraries",
    "session_preload_libraries",
];

/// SQL text to re-establish a setting from its `current_setting` value.
pub fn sql_for_setting(name: &str, value: &str) -> String {
    if LIST_SETTINGS.contains(&name) && !value.is_empty() {
        value.to_owned()
    } else {
        literal(value)
    }
}

/// The names a change touches (all of them for RESET ALL), `pgroute.*` excluded.
pub fn names(changes: &[ParamChange], session: &Params, server: &Params) -> Vec<String> {
    let mut out = Vec::new();
    for change in changes {
        match change {
            ParamChange::Set { name, .. } | ParamChange::Reset { name } => {
                if !is_pgroute(name) {
                    out.push(name.clone());
                }
            }
            ParamChange::ResetAll => out.extend(session.keys().chain(server.keys()).cloned()),
        }
    }
    out
}

/// Applies the changes to what a server connection holds: RESET returns a parameter to the
/// connection's own default, which this map represents by its absence.
pub fn apply_on_server(params: &mut Params, changes: &[ParamChange]) {
    for change in changes {
        match change {
            ParamChange::Set { name, .. } | ParamChange::Reset { name } if is_pgroute(name) => {}
            ParamChange::Set { name, value } if !value.eq_ignore_ascii_case("default") => {
                params.insert(name.clone(), value.clone());
            }
            ParamChange::Set { name, .. } | ParamChange::Reset { name } => {
                params.remove(name);
            }
            ParamChange::ResetAll => params.clear(),
        }
    }
}

/// RESET returns a parameter to its session default, which for startup parameters is the
/// startup value.
fn reset(params: &mut Params, name: &str, startup: &Params) {
    match startup.get(name) {
        Some(v) => params.insert(name.to_owned(), v.clone()),
        None => params.remove(name),
    };
}

/// SQL that turns a connection whose parameters are `have` into one with `want`, or None.
pub fn sync_sql(want: &Params, have: &Params) -> Option<String> {
    let mut sql = String::new();
    for (name, value) in want {
        if have.get(name) != Some(value) {
            sql.push_str(&format!("SET {} TO {};", ident(name), value));
        }
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        sql.push_str(&format!("RESET {};", ident(name)));
    }
    (!sql.is_empty()).then_some(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn startup_parameters_become_settings_and_options_are_expanded() {
        let p = from_startup(&startup(&[
            ("user", "app"),
            ("database", "db"),
            ("application_name", "it's"),
            ("DateStyle", "ISO"),
            (
                "options",
                "-c search_path=s1 --statement-timeout=5 -cwork_mem=4MB",
            ),
        ]));
        assert_eq!(p.get("application_name").unwrap(), "'it''s'");
        assert_eq!(p.get("datestyle").unwrap(), "'ISO'");
        assert_eq!(p.get("search_path").unwrap(), "'s1'");
        assert_eq!(p.get("statement_timeout").unwrap(), "'5'");
        assert_eq!(p.get("work_mem").unwrap(), "'4MB'");
        assert!(!p.contains_key("user") && !p.contains_key("options"));
    }

    #[test]
    fn sync_sets_what_differs_and_resets_what_is_extra() {
        let want = from_startup(&startup(&[("application_name", "a"), ("timezone", "UTC")]));
        let mut have = want.clone();
        assert_eq!(sync_sql(&want, &have), None);
        have.insert("application_name".into(), "'b'".into());
        have.insert("search_path".into(), "x".into());
        assert_eq!(
            sync_sql(&want, &have).unwrap(),
            "SET \"application_name\" TO 'a';RESET \"search_path\";"
        );
    }

    #[test]
    fn reset_all_on_the_server_needs_the_startup_values_again() {
        let start = from_startup(&startup(&[("application_name", "a")]));
        let mut session = start.clone();
        let mut server = start.clone();
        let changes = [ParamChange::ResetAll];
        apply(&mut session, &changes, &start);
        apply_on_server(&mut server, &changes);
        assert_eq!(session, start);
        assert_eq!(
            sync_sql(&session, &server).unwrap(),
            "SET \"application_name\" TO 'a';"
        );
    }

    #[test]
    fn reset_returns_to_the_startup_value() {
        let start = from_startup(&startup(&[("application_name", "a")]));
        let mut p = start.clone();
        let set = |n: &str, v: &str| ParamChange::Set {
            name: n.into(),
            value: v.into(),
        };
        apply(
            &mut p,
            &[set("application_name", "'b'"), set("work_mem", "'1MB'")],
            &start,
        );
        assert_eq!(p.get("application_name").unwrap(), "'b'");
        apply(
            &mut p,
            &[ParamChange::Reset {
                name: "application_name".into(),
            }],
            &start,
        );
        assert_eq!(p.get("application_name").unwrap(), "'a'");
        apply(&mut p, &[set("work_mem", "DEFAULT")], &start);
        assert!(!p.contains_key("work_mem"));
        apply(
            &mut p,
            &[set("work_mem", "'2MB'"), ParamChange::ResetAll],
            &start,
        );
        assert_eq!(p, start);
    }
}
