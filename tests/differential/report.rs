//! What a run prints: one case's steps and both reply streams, the per-family summary.

use super::*;

/// Per-family tally.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) cases: usize,
    pub(crate) differing: usize,
    pub(crate) invalid: usize,
    /// Signatures already reported (a difference seen again is only counted).
    pub(crate) signatures: Vec<String>,
    /// The first difference of a known-different family, for the summary.
    pub(crate) example: Option<String>,
}

pub(crate) fn report(o: &Outcome, label: &str) -> String {
    let mut s = format!(
        "=== {label}: family {} case {}\n--- steps ({}):\n",
        o.case.family,
        o.case.origin,
        o.case.steps.len()
    );
    for step in &o.case.steps {
        let _ = writeln!(s, "    {step}");
    }
    for d in &o.differences {
        let _ = writeln!(s, "--- {d}");
    }
    let first = first_mismatch(&o.direct.events, &o.proxied.events);
    for (name, t) in [("direct", &o.direct), ("proxied", &o.proxied)] {
        let _ = writeln!(s, "--- {name} ({:?}):", t.elapsed);
        if let Some(e) = &t.startup_error {
            let _ = writeln!(s, "    startup failed: {e}");
        }
        for (i, e) in t.events.iter().enumerate().take(80) {
            let mark = if Some(i) == first { ">>" } else { "  " };
            let _ = writeln!(s, "  {mark}{i:3} {e}");
        }
    }
    s
}

pub(crate) fn summary(tally: &BTreeMap<String, Tally>, replayed: usize, elapsed: Duration) {
    let mut s = format!("differential: {replayed} regression cases replayed, {elapsed:?}\n");
    for (family, t) in tally {
        let known = KNOWN_DIFFERENT.contains(&family.as_str());
        let _ = writeln!(
            s,
            "  {family:24} {:3} cases {:3} differing {:3} invalid{}",
            t.cases,
            t.differing,
            t.invalid,
            if known { "  (known different)" } else { "" }
        );
        if known && t.differing == 0 && t.cases > 0 {
            let _ = writeln!(
                s,
                "    -> no difference seen: remove {family:?} from KNOWN_DIFFERENT?"
            );
        }
    }
    for t in tally.values() {
        if let Some(example) = &t.example {
            s.push_str(example);
        }
    }
    eprintln!("{s}");
}
