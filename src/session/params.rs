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

/// The session parameters a StartupMessage asks for, including `-c name=value` in `options`
/// (`pgroute.*` ones excluded: see [`own_from_startup`]).
pub fn from_startup(startup: &BTreeMap<String, String>) -> Params {
    startup_settings(startup)
        .filter(|(name, _)| !is_pgroute(name))
        .map(|(name, value)| (name, literal(value)))
        .collect()
}

/// The `pgroute.*` settings a StartupMessage asks for (name, value without quotes), as
/// parameters or as `-c pgroute.x=…` in `options`.
pub fn own_from_startup(startup: &BTreeMap<String, String>) -> Vec<(String, String)> {
    startup_settings(startup)
        .filter(|(name, _)| is_pgroute(name))
        .map(|(name, value)| (name, value.to_owned()))
        .collect()
}

/// Every setting of a StartupMessage, parameters first, then `options`; names lower-cased as
/// PostgreSQL compares them (ASCII only: `Ä.x` and `ä.x` are two placeholder settings).
fn startup_settings(
    startup: &BTreeMap<String, String>,
) -> impl Iterator<Item = (String, &str)> + '_ {
    let direct = startup
        .iter()
        .filter(|(name, _)| !NOT_SETTINGS.contains(&name.as_str()))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_str()));
    let mut words = startup
        .get("options")
        .map(|o| o.split_whitespace())
        .into_iter()
        .flatten();
    let options = std::iter::from_fn(move || loop {
        let setting = match words.next()? {
            "-c" => words.next(),
            w => w.strip_prefix("--").or_else(|| w.strip_prefix("-c")),
        };
        if let Some((name, value)) = setting.and_then(|s| s.split_once('=')) {
            return Some((name.replace('-', "_").to_ascii_lowercase(), value));
        }
    });
    direct.chain(options)
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
    // Bytes, not `&name[..8]`: a client's name may have a multi-byte character across byte 8.
    name.len() > 8 && name.as_bytes()[..8].eq_ignore_ascii_case(b"pgroute.")
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

    #[test]
    fn a_multi_byte_character_across_byte_8_is_not_a_pgroute_name() {
        assert!(!is_pgroute("pgrouteé.x"));
        assert!(!is_pgroute("pgrouteé"));
        assert!(is_pgroute("PGROUTE.é"));
        assert!(!is_pgroute("pgroute."));
        let p = from_startup(&startup(&[("pgrouteÉ.x", "1"), ("pgroute.min_lsn", "0/1")]));
        assert_eq!(p.keys().collect::<Vec<_>>(), ["pgrouteÉ.x"]);
    }

    #[test]
    fn pgroute_settings_come_from_parameters_and_options() {
        let own = own_from_startup(&startup(&[
            ("pgroute.max_lag", "1s"),
            ("options", "-c pgroute.min_lsn=0/1 -c work_mem=1MB"),
        ]));
        assert_eq!(
            own,
            [
                ("pgroute.max_lag".to_owned(), "1s".to_owned()),
                ("pgroute.min_lsn".to_owned(), "0/1".to_owned())
            ]
        );
        let p = from_startup(&startup(&[("options", "-c pgroute.min_lsn=0/1")]));
        assert!(p.is_empty(), "{p:?}");
    }

    mod arbitrary_text {
        use proptest::prelude::*;

        use super::super::*;
        use crate::classify::classify;
        use crate::consistency::{self, parse_hints};
        use crate::session::local;

        /// Names that start like pgroute's own, or not, followed by any text.
        fn name() -> impl Strategy<Value = String> {
            let prefix = prop_oneof!["", "pgroute", "pgroute.", "PgRoute.", "pgroute\\PC"];
            (prefix, any::<String>()).prop_map(|(p, rest)| p + &rest)
        }

        /// What `is_pgroute` must say, computed another way.
        fn expected_pgroute(name: &str) -> bool {
            let lower: Vec<u8> = name.bytes().map(|b| b.to_ascii_lowercase()).collect();
            lower.starts_with(b"pgroute.") && lower.len() > 8
        }

        proptest! {
            /// Startup parameters of any text: no panic, `pgroute.*` ones go to the session,
            /// the others to the servers as SQL literals of their values.
            #[test]
            fn startup_parameters(
                pairs in proptest::collection::vec((name(), any::<String>()), 0..6),
                options in any::<String>(),
            ) {
                let mut startup: BTreeMap<String, String> = pairs.into_iter().collect();
                startup.insert("options".into(), options);
                let server = from_startup(&startup);
                let own = own_from_startup(&startup);
                for (name, value) in &server {
                    prop_assert!(!is_pgroute(name));
                    prop_assert_eq!(name, &name.to_ascii_lowercase());
                    prop_assert!(value.starts_with('\'') && value.ends_with('\''));
                }
                for (name, _) in &own {
                    prop_assert!(is_pgroute(name));
                }
                for (name, value) in &startup {
                    if name != "options" && !expected_pgroute(name) {
                        // The options may set the same name again.
                        prop_assert!(server.contains_key(&name.to_ascii_lowercase()));
                        if !startup["options"].contains('=') {
                            prop_assert_eq!(&server[&name.to_ascii_lowercase()], &literal(value));
                        }
                    }
                }
                let mut session = consistency::Session::new(crate::config::RywMode::Lsn, Default::default());
                for (name, value) in &own {
                    let _ = session.set(name, &literal(value));
                    let _ = session.show(name);
                }
                let _ = sync_sql(&server, &Params::new());
            }

            /// `SET`/`SHOW`/`RESET` of any name: no panic, and pgroute answers only its own.
            #[test]
            fn set_and_show_names(name in name(), value in any::<String>()) {
                prop_assert_eq!(is_pgroute(&name), expected_pgroute(&name));
                let quoted = format!("\"{}\"", name.replace('"', "\"\""));
                for sql in [
                    format!("SHOW {name}"),
                    format!("SHOW {quoted}"),
                    format!("SET {name} = {}", literal(&value)),
                    format!("SET {quoted} TO {}", literal(&value)),
                    format!("RESET {name}"),
                ] {
                    let class = classify(&sql);
                    if local::answers(&sql, &class) {
                        prop_assert!(sql.to_ascii_lowercase().contains("pgroute."), "{}", sql);
                    }
                    let changes = class.params.clone();
                    let mut session = Params::new();
                    apply(&mut session, &changes, &Params::new());
                    let mut server = Params::new();
                    apply_on_server(&mut server, &changes);
                    let _ = names(&changes, &session, &server);
                    let _ = sync_sql(&session, &server);
                    prop_assert!(session.keys().all(|n| !is_pgroute(n)));
                }
                let plain = format!("pgroute.{}", name.chars().filter(char::is_ascii_alphanumeric).collect::<String>());
                if plain.len() > 8 {
                    let sql = format!("SHOW {plain}");
                    prop_assert!(local::answers(&sql, &classify(&sql)), "{}", sql);
                }
            }

            /// Hint comments around any text: no panic, and a well-formed hint is read.
            #[test]
            fn hint_comments(junk in any::<String>(), rest in any::<String>(), hi in any::<u32>(), lo in any::<u32>()) {
                let _ = parse_hints(&junk);
                let _ = parse_hints(&format!("/* {junk} */ {rest}"));
                let junk = junk.replace(['*', '='], "");
                let sql = format!("/* {junk} pgroute.min_lsn={hi:X}/{lo:X} */ {rest}");
                let hints = parse_hints(&sql);
                prop_assert_eq!(hints.min_lsn, Some(crate::backend::view::Lsn((u64::from(hi) << 32) | u64::from(lo))));
                let _ = classify(&sql);
            }
        }
    }
}
