//! ParameterStatus as the client sees it. A pooled server connection's reports are not relayed
//! as they come: it reports the values pgroute sets when it replays the client's parameters,
//! and after a RESET its own defaults before pgroute puts the client's startup values back.
//! PostgreSQL reports what changed just before ReadyForQuery; so does pgroute, from what the
//! server reported since the client's last ReadyForQuery and what that means for the client.

use std::collections::HashMap;

use bytes::BytesMut;

use crate::classify::ParamChange;
use crate::protocol::{messages, Body};

/// The session's reported parameters.
#[derive(Debug, Default)]
pub struct Reported {
    /// The value the client was last told, by name as the server spells it.
    client: HashMap<String, String>,
    /// The values the client gave at startup (lower-case names): what RESET returns them to.
    startup: HashMap<String, String>,
    /// The server's reports since the client's last ReadyForQuery, in order.
    pending: Vec<(String, String)>,
    /// Since then, by lower-case name: was its last change a RESET (true) or a SET (false)?
    last_change: HashMap<String, bool>,
    /// A RESET ALL came since then (names changed after it are in `last_change`).
    reset_all: bool,
}

impl Reported {
    /// What the client was told at login; `asked`: the parameters it gave at startup.
    pub fn new<'a>(
        told: impl Iterator<Item = (&'a str, &'a str)>,
        asked: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        Reported {
            client: told.map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            startup: asked
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect(),
            ..Reported::default()
        }
    }

    /// The value the client was last told for `name` (as the server spells it).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.client.get(name).map(String::as_str)
    }

    /// A ParameterStatus frame from the server.
    pub fn on_server_report(&mut self, frame: &[u8]) {
        let mut body = Body::of_frame(frame);
        if let (Ok(name), Ok(value)) = (body.cstr("ParameterStatus"), body.cstr("ParameterStatus"))
        {
            self.pending.push((name.to_owned(), value.to_owned()));
        }
    }

    /// A statement making these changes completed on the server.
    pub fn on_changes(&mut self, changes: &[ParamChange]) {
        for change in changes {
            match change {
                ParamChange::ResetAll => {
                    self.last_change.clear();
                    self.reset_all = true;
                }
                ParamChange::Reset { name } => {
                    self.last_change.insert(name.clone(), true);
                }
                ParamChange::Set { name, .. } => {
                    self.last_change.insert(name.clone(), false);
                }
            }
        }
    }

    /// Just before a ReadyForQuery for the client: ParameterStatus for what changed for it.
    /// A parameter the client gave at startup and has just RESET gets its startup value back
    /// (pgroute restores it on the server right after): reported as that value.
    pub fn flush(&mut self, out: &mut BytesMut) {
        for i in 0..self.pending.len() {
            let (name, value) = &self.pending[i];
            if self.pending[i + 1..].iter().any(|(later, _)| later == name) {
                continue;
            }
            let key = name.to_ascii_lowercase();
            let was_reset = self
                .last_change
                .get(&key)
                .copied()
                .unwrap_or(self.reset_all);
            let value = match self.startup.get(&key) {
                Some(startup) if was_reset => startup,
                _ => value,
            };
            if self.client.get(name) != Some(value) {
                messages::parameter_status(out, name, value);
                self.client.insert(name.clone(), value.clone());
            }
        }
        self.pending.clear();
        self.last_change.clear();
        self.reset_all = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, value: &str) -> BytesMut {
        let mut out = BytesMut::new();
        messages::parameter_status(&mut out, name, value);
        out
    }

    fn reported() -> Reported {
        Reported::new(
            [("application_name", "app"), ("TimeZone", "UTC")].into_iter(),
            [("application_name", "app")].into_iter(),
        )
    }

    #[test]
    fn only_what_changed_for_the_client_is_reported() {
        let mut r = reported();
        // pgroute's replay of the client's own value on a pooled connection.
        r.on_server_report(&report("application_name", "app"));
        let mut out = BytesMut::new();
        r.flush(&mut out);
        assert!(out.is_empty());
        r.on_changes(&[ParamChange::Set {
            name: "timezone".into(),
            value: "'Europe/Paris'".into(),
        }]);
        r.on_server_report(&report("TimeZone", "Europe/Paris"));
        r.flush(&mut out);
        assert_eq!(out, report("TimeZone", "Europe/Paris"));
    }

    #[test]
    fn a_reset_startup_parameter_is_reported_with_its_startup_value() {
        let mut r = reported();
        let mut out = BytesMut::new();
        r.on_server_report(&report("application_name", "y"));
        r.flush(&mut out);
        assert_eq!(out, report("application_name", "y"));
        out.clear();
        // RESET ALL: the pooled connection falls back to its own default, ''.
        r.on_changes(&[ParamChange::ResetAll]);
        r.on_server_report(&report("application_name", ""));
        r.flush(&mut out);
        assert_eq!(out, report("application_name", "app"));
        out.clear();
        // pgroute's restore, then RESET ALL when nothing differs: nothing to report.
        r.on_server_report(&report("application_name", "app"));
        r.flush(&mut out);
        r.on_changes(&[ParamChange::ResetAll]);
        r.on_server_report(&report("application_name", ""));
        r.flush(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_set_after_reset_all_reports_the_set_value() {
        let mut r = reported();
        let mut out = BytesMut::new();
        r.on_changes(&[
            ParamChange::ResetAll,
            ParamChange::Set {
                name: "application_name".into(),
                value: "'q'".into(),
            },
        ]);
        r.on_server_report(&report("application_name", "q"));
        r.flush(&mut out);
        assert_eq!(out, report("application_name", "q"));
    }
}
