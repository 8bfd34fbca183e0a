use super::*;

fn encoded(metrics: &Metrics) -> String {
    let mut registry = Registry::with_prefix("pgroute");
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encodes");
    text
}

fn rules(names: &[&str]) -> Arc<RuleSet> {
    let mut toml = String::from(
        "[[users]]\nname = \"app\"\npassword = \"x\"\n\
         [[nodes]]\nname = \"pg1\"\naddr = \"127.0.0.1:5432\"\nrole = \"primary\"\n",
    );
    for name in names {
        toml += &format!(
            "[[rules]]\nname = \"{name}\"\napplication_name = \"x\"\nroute = \"primary\"\n"
        );
    }
    let cfg = crate::config::from_toml_str(&toml).expect("config loads");
    Arc::new(RuleSet::compile(&cfg).expect("rules compile"))
}

#[test]
fn every_reason_has_its_own_slot_named_as_the_router_names_it() {
    for (slot, reason) in SLOT_REASONS.iter().enumerate() {
        assert_eq!(reason_slot(*reason), slot, "{reason}");
    }
}

#[test]
fn units_are_counted_by_node_and_reason_and_rules_by_name() {
    let m = Metrics::default();
    let names = || vec!["pg1".to_owned(), "pg2".to_owned()];
    let set = rules(&["reports"]);
    m.routed(1, Reason::Replica, names, || set.clone());
    m.routed(1, Reason::Replica, names, || set.clone());
    m.routed(0, Reason::Write, names, || set.clone());
    m.routed(1, Reason::Rule(RuleId(0)), names, || set.clone());
    // A node a reload added: its handles are made on first use.
    let more = || vec!["pg1".to_owned(), "pg2".to_owned(), "pg3".to_owned()];
    m.routed(2, Reason::ReadYourWrites, more, || set.clone());
    // A reloaded rule set: rule ids now mean other rules.
    let reloaded = rules(&["batch", "reports"]);
    m.routed(1, Reason::Rule(RuleId(1)), more, || reloaded.clone());
    let text = encoded(&m);
    for line in [
        "pgroute_units_routed_total{node=\"pg2\",reason=\"replica\"} 2",
        "pgroute_units_routed_total{node=\"pg1\",reason=\"write\"} 1",
        "pgroute_units_routed_total{node=\"pg2\",reason=\"rule\",rule=\"reports\"} 2",
        "pgroute_units_routed_total{node=\"pg3\",reason=\"read-your-writes\"} 1",
        "pgroute_units_routed_total{node=\"pg2\",reason=\"rule\",rule=\"batch\"} 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

#[test]
fn errors_are_counted_by_sqlstate_class() {
    let m = Metrics::default();
    m.client_error(b"42601");
    m.client_error(b"42P01");
    m.client_error(b"57P03");
    m.client_error(b"junk");
    let text = encoded(&m);
    for line in [
        "pgroute_client_errors_total{class=\"42\"} 2",
        "pgroute_client_errors_total{class=\"57\"} 1",
        "pgroute_client_errors_total{class=\"XX\"} 1",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

#[test]
fn histograms_are_cumulative_with_sum_and_count() {
    let m = Metrics::default();
    m.unit_duration.observe(Duration::from_micros(300));
    m.unit_duration.observe(Duration::from_millis(3));
    m.unit_duration.observe(Duration::from_secs(60));
    let text = encoded(&m);
    for line in [
        "pgroute_unit_duration_seconds_bucket{le=\"0.0005\"} 1",
        "pgroute_unit_duration_seconds_bucket{le=\"0.005\"} 2",
        "pgroute_unit_duration_seconds_bucket{le=\"10\"} 2",
        "pgroute_unit_duration_seconds_bucket{le=\"+Inf\"} 3",
        "pgroute_unit_duration_seconds_count 3",
        "pgroute_unit_duration_seconds_sum 60.0033",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

#[test]
fn reloads_waits_and_retries_are_counted() {
    let m = Metrics::default();
    m.reload(true);
    m.reload(false);
    m.reload(false);
    m.ryw_wait(WaitOutcome::Primary);
    m.read_retry();
    let text = encoded(&m);
    for line in [
        "pgroute_config_reloads_total{result=\"ok\"} 1",
        "pgroute_config_reloads_total{result=\"failed\"} 2",
        "pgroute_read_your_writes_waits_total{outcome=\"primary\"} 1",
        "pgroute_read_your_writes_waits_total{outcome=\"replica\"} 0",
        "pgroute_read_retries_total 1",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}
