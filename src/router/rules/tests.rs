//! Rule compilation and matching, without a database.
use super::*;
use crate::classify::classify;
use crate::config::from_toml_str;

const BASE: &str = r#"
[[users]]
name = "app"
password = "x"
[[nodes]]
name = "pg1"
addr = "127.0.0.1:5432"
role = "primary"
[[nodes]]
name = "pg2"
addr = "127.0.0.1:5433"
role = "replica"
groups = ["analytics"]
[groups.analytics]
exclusive = true
"#;

fn rules(extra: &str) -> RuleSet {
    let config = from_toml_str(&format!("{BASE}{extra}")).expect("config loads");
    RuleSet::compile(&config).expect("rules compile")
}

fn load_error(extra: &str) -> String {
    match from_toml_str(&format!("{BASE}{extra}")) {
        Ok(_) => panic!("config with {extra} loaded"),
        Err(e) => e.to_string(),
    }
}

fn session<'a>(user: &'a str, app: &'a str, addr: &str) -> SessionInfo<'a> {
    SessionInfo {
        user,
        database: "shop",
        application_name: app,
        client_addr: addr.parse().ok(),
    }
}

/// The name of the first rule matching `sql` for the session, if any.
fn decide(set: &RuleSet, s: &SessionInfo, sql: &str) -> Option<String> {
    let mut ids = Vec::new();
    set.session_candidates(s, &mut ids);
    let class = classify(sql);
    let st = StatementInfo {
        class: &class,
        text: sql,
        in_transaction: false,
    };
    set.first_match(&ids, &st)
        .and_then(|id| set.rule(id))
        .map(|r| r.name.to_string())
}

#[test]
fn session_matchers_are_globs_and_a_cidr() {
    let set = rules(
        r#"
[[rules]]
name = "reports"
user = "report*"
database = "sh?p"
application_name = "metabase*"
client_addr = "10.1.0.0/16"
route = "group:analytics"
"#,
    );
    let sql = "SELECT 1";
    let hit = |user, app, addr| decide(&set, &session(user, app, addr), sql);
    assert_eq!(
        hit("reporter", "metabase-x", "10.1.2.3").as_deref(),
        Some("reports")
    );
    assert_eq!(hit("app", "metabase-x", "10.1.2.3"), None, "user");
    assert_eq!(
        hit("reporter", "psql", "10.1.2.3"),
        None,
        "application_name"
    );
    assert_eq!(
        hit("reporter", "metabase-x", "10.2.0.1"),
        None,
        "client_addr"
    );
    assert_eq!(
        hit("reporter", "metabase-x", "::ffff:10.1.0.9").as_deref(),
        Some("reports"),
        "an IPv4-mapped address is its IPv4 address"
    );
    assert_eq!(hit("reporter", "metabase-x", "not an address"), None);
}

#[test]
fn statement_matchers_query_kind_and_tables() {
    let set = rules(
        r#"
[[rules]]
name = "events"
tables = ["events_*", "public.audit_log"]
route = "group:analytics"
[[rules]]
name = "slow"
query = "(?i)\\bpg_sleep\\b"
kind = "read"
route = "primary"
[[rules]]
name = "no-ddl"
kind = "ddl"
route = "block"
message = "no DDL through pgroute"
"#,
    );
    let s = session("app", "psql", "127.0.0.1");
    let hit = |sql| decide(&set, &s, sql);
    for sql in [
        "SELECT * FROM events_2026",
        "SELECT o.id FROM orders o JOIN Events_2026 e ON e.id = o.id",
        "SELECT * FROM orders WHERE id IN (SELECT id FROM events_x)",
        "WITH r AS (SELECT * FROM events_1) SELECT * FROM r",
        "SELECT * FROM archive.events_2025",
        "SELECT * FROM audit_log",
        "SELECT * FROM public.audit_log",
        "SELECT * FROM \"public\".\"audit_log\"",
        // Table globs ignore case.
        "SELECT * FROM \"Events_2026\"",
    ] {
        assert_eq!(hit(sql).as_deref(), Some("events"), "{sql}");
    }
    for sql in [
        "SELECT * FROM orders",
        "SELECT 'events_2026' FROM orders",
        "SELECT * FROM other.audit_log",
    ] {
        assert_eq!(hit(sql), None, "{sql}");
    }
    assert_eq!(hit("select PG_SLEEP(1)").as_deref(), Some("slow"));
    assert_eq!(hit("CREATE TABLE t (a int)").as_deref(), Some("no-ddl"));
    assert_eq!(
        hit("drop table events_1").as_deref(),
        Some("no-ddl"),
        "a route to replicas does not apply to DDL"
    );
    assert_eq!(hit("INSERT INTO t VALUES (1)"), None);
}

#[test]
fn rules_routing_to_replicas_skip_writes_and_transactions_match_by_kind() {
    let set = rules(
        r#"
[[rules]]
name = "reads"
user = "app"
route = "replica"
[[rules]]
name = "txn"
kind = "transaction"
route = "block"
[[rules]]
name = "writes"
kind = "write"
route = "primary"
"#,
    );
    let s = session("app", "psql", "127.0.0.1");
    assert_eq!(decide(&set, &s, "SELECT 1").as_deref(), Some("reads"));
    assert_eq!(decide(&set, &s, "BEGIN").as_deref(), Some("txn"));
    assert_eq!(
        decide(&set, &s, "UPDATE t SET a = 1").as_deref(),
        Some("writes")
    );
    let class = classify("SELECT 1");
    let mut ids = Vec::new();
    set.session_candidates(&s, &mut ids);
    let in_txn = StatementInfo {
        class: &class,
        text: "SELECT 1",
        in_transaction: true,
    };
    assert_eq!(set.first_match(&ids, &in_txn), Some(RuleId(0)), "reads in a transaction are still reads to the rule that routes them (the transaction keeps them)");
}

#[test]
fn outcomes_name_the_rule_and_blocks_carry_the_message() {
    let set = rules(
        r#"
[[rules]]
name = "a"
route = "group:analytics"
[[rules]]
name = "b"
route = "block"
message = "nope"
"#,
    );
    assert_eq!(
        set.outcome(Some(RuleId(0))),
        RuleOutcome::Steer(Steer::Group(GroupId(0), By::Rule(RuleId(0))))
    );
    assert_eq!(set.outcome(Some(RuleId(1))), RuleOutcome::Block(RuleId(1)));
    assert_eq!(set.outcome(None), RuleOutcome::Steer(Steer::Default));
    assert_eq!(set.rules[1].route, RuleRoute::Block("nope".into()));
}

#[test]
fn unsafe_or_broken_rules_are_refused_at_load_naming_the_rule() {
    let cases = [
        (
            "[[rules]]\nname = \"w\"\nkind = \"write\"\nroute = \"replica\"\n",
            "rules[0].route: rule \"w\" matches only write statements",
        ),
        (
            "[[rules]]\nname = \"d\"\nkind = \"ddl\"\nroute = \"group:analytics\"\n",
            "rules[0].route: rule \"d\" matches only ddl statements",
        ),
        (
            "[[rules]]\nname = \"g\"\nroute = \"group:nope\"\n",
            "rules[0].route: rule \"g\": no group \"nope\"",
        ),
        ("[[rules]]\nname = \"x\"\nroute = \"sideways\"\n", "rules[0].route"),
        (
            "[[rules]]\nname = \"x\"\nroute = \"primary\"\n[[rules]]\nname = \"x\"\nroute = \"primary\"\n",
            "rules[1].name: duplicate rule name",
        ),
        ("[[rules]]\nname = \"q\"\nquery = \"(\"\nroute = \"primary\"\n", "rules[0].query: bad regular expression"),
        ("[[rules]]\nname = \"c\"\nclient_addr = \"10.0.0.0/33\"\nroute = \"primary\"\n", "rules[0].client_addr"),
        ("[[rules]]\nname = \"u\"\nuser = \"a[\"\nroute = \"primary\"\n", "rules[0].user: bad glob"),
        ("[[rules]]\nname = \"m\"\nroute = \"primary\"\nmessage = \"x\"\n", "rules[0].message"),
        ("[[rules]]\nname = \"n\"\nroute = \"primary\"\nbogus = 1\n", "bogus"),
        ("[groups.\"bad name\"]\n", "groups.bad name"),
        ("[groups.g2]\nmax_bytes = \"0B\"\n", "groups.g2.max_bytes"),
    ];
    for (extra, want) in cases {
        let e = load_error(extra);
        assert!(e.contains(want), "{extra}\n  gave {e:?}\n  want {want:?}");
    }
}

#[test]
fn nodes_name_existing_groups_and_the_primary_cannot_be_drained() {
    let cfg = BASE.replace("groups = [\"analytics\"]", "groups = [\"analytic\"]");
    let e = from_toml_str(&cfg).expect_err("unknown group").to_string();
    assert!(e.contains("nodes[1].groups: no group \"analytic\""), "{e}");
    let cfg = BASE.replace("role = \"primary\"", "role = \"primary\"\ndrain = true");
    let e = from_toml_str(&cfg)
        .expect_err("drained primary")
        .to_string();
    assert!(
        e.contains("nodes[0].drain: the primary cannot be drained"),
        "{e}"
    );
}

#[test]
fn a_reloaded_rule_set_is_recomputed_for_the_session() {
    let a = rules("[[rules]]\nname = \"a\"\nuser = \"app\"\nroute = \"primary\"\n");
    let b = rules("[[rules]]\nname = \"b\"\nuser = \"other\"\nroute = \"primary\"\n");
    let s = session("app", "psql", "127.0.0.1");
    let mut ids = Vec::new();
    a.session_candidates(&s, &mut ids);
    assert_eq!(ids, vec![RuleId(0)]);
    b.session_candidates(&s, &mut ids);
    assert!(ids.is_empty());
}

/// The in-place comparison of the usual table globs gives the glob engine's answer.
#[test]
fn fast_table_globs_agree_with_the_glob_engine() {
    let patterns = [
        "audit_log",
        "events_*",
        "*_log",
        "*",
        "public.audit_log",
        "*.audit_log",
        "analytics.*",
        "Events_*",
        "ev?nts_*",
        "events_[0-9]*",
        "{orders,items}",
        "événements_*",
        "s*_log",
    ];
    let names = [
        "audit_log",
        "AUDIT_LOG",
        "events_2026",
        "Events_",
        "events",
        "orders",
        "public.audit_log",
        "other.audit_log",
        "analytics.daily",
        "ANALYTICS.x",
        "événements_1",
        "ÉVÉNEMENTS_1",
        "sessions_log",
        "\u{212a}ey_log",
        "",
    ];
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .case_insensitive(true)
            .build()
            .expect("glob")
            .compile_matcher();
        let pattern = TablePattern::new(p).expect("pattern");
        for name in names {
            assert_eq!(
                pattern.is_match("", name),
                glob.is_match(name),
                "{p} on {name}"
            );
            assert_eq!(
                pattern.is_match("public.", name),
                glob.is_match(format!("public.{name}")),
                "{p} on public.{name}"
            );
        }
    }
}
