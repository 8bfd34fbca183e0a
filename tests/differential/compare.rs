//! Comparing the two sides of a case: the outcome, its differences and their signature.

use super::*;

/// What one case did on both sides.
pub(crate) struct Outcome {
    pub(crate) case: Case,
    pub(crate) direct: Transcript,
    pub(crate) proxied: Transcript,
    /// Every difference found, worded for the report; empty when the sides agree.
    pub(crate) differences: Vec<String>,
    /// Why the case says nothing (the direct side itself did not finish).
    pub(crate) invalid: Option<String>,
    /// What kind of difference the first one is, e.g. `Z / <closed>` for a stream where
    /// PostgreSQL sent ReadyForQuery and pgroute closed: shrinking keeps it.
    pub(crate) signature: Option<String>,
}

impl Outcome {
    pub(crate) fn differs(&self) -> bool {
        self.invalid.is_none() && !self.differences.is_empty()
    }

    pub(crate) fn note(&mut self, signature: &str, difference: String) {
        self.signature.get_or_insert_with(|| signature.to_owned());
        self.differences.push(difference);
    }
}

/// The kind of an event: its type, and for errors and notices the severity and SQLSTATE.
fn kind(e: Option<&Event>) -> String {
    match e {
        None => "<nothing>".into(),
        Some(Event::Msg { key, .. }) if key.starts_with("E ") || key.starts_with("N ") => {
            key.clone()
        }
        Some(Event::Msg { key, .. }) => key.split(' ').next().unwrap_or("").to_owned(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn compare_streams(o: &mut Outcome) {
    if let Some(e) = o.proxied.startup_error.clone() {
        o.note("startup", format!("proxied startup failed: {e}"));
        return;
    }
    let (d, p) = (&o.direct.events, &o.proxied.events);
    if let Some(i) = first_mismatch(d, p) {
        let what = if p.get(i) == Some(&Event::Hang) {
            "proxied side hangs"
        } else {
            "reply streams differ"
        };
        let signature = format!("{} / {}", kind(d.get(i)), kind(p.get(i)));
        o.note(&signature, format!("{what} at message {i}: {signature}"));
    }
}

pub(crate) fn first_mismatch(d: &[Event], p: &[Event]) -> Option<usize> {
    (0..d.len().max(p.len())).find(|&i| d.get(i) != p.get(i))
}
