//! The session's side of the function catalog ([`crate::catalog`]): a read that calls a
//! function that may write becomes a write before the router decides, and answers cached about
//! functions are dropped once DDL that changes them has passed through this session.

use std::sync::Arc;

use crate::classify::{Classification, Target};

use super::Session;

impl Session {
    /// `target` (a unit's, as classified) once the functions its reads call are judged: a read
    /// calling a VOLATILE function (or one that could not be looked up) is a write. Costs nothing
    /// for a write or a read that calls no function beyond the known built-ins; awaits the
    /// primary only for a name not cached yet.
    pub(super) async fn judge_functions(
        &self,
        target: Target,
        classes: &[Arc<Classification>],
    ) -> Target {
        if target == Target::Write {
            return target;
        }
        for class in classes {
            if class.functions.is_empty() {
                continue;
            }
            let catalog = &self.proxy.functions;
            if catalog.target(&self.functions, &class.functions).await == Target::Write {
                return Target::Write;
            }
        }
        target
    }

    /// A unit that creates, replaces, alters or drops functions is being sent: cached answers
    /// are dropped now, and again once the session is out of any transaction (when the change
    /// is committed, or undone), so that no answer read in between survives.
    pub(super) fn on_function_ddl(&mut self) {
        self.proxy.functions.clear();
        self.functions_changed = true;
    }

    /// ReadyForQuery with `status` reached the session.
    pub(super) fn functions_on_ready(&mut self, status: u8) {
        if self.functions_changed && status == b'I' {
            self.functions_changed = false;
            self.proxy.functions.clear();
        }
    }
}
