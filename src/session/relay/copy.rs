//! COPY FROM STDIN as the relay sees it: which Syncs sent during copy-in the server ignores,
//! and when the session is in COPY IN.

use super::{Event, Expect, ExpectKind, Relay};

impl Relay {
    /// A Sync the client sent while the server is in COPY IN: the server ignores it, but if
    /// the COPY fails before reading it (a Sync after COPY data), the server answers it.
    pub fn sync_during_copy(&mut self, after_copy_data: bool) {
        if after_copy_data {
            let mut e = Expect::new(ExpectKind::Sync);
            e.optional = true;
            self.expects.push_back(e);
        }
    }

    /// The server said CopyInResponse to the front statement (`extended`: an Execute).
    pub(super) fn copy_started(&mut self, extended: bool, events: &mut Vec<Event>) {
        self.copy_in = true;
        // CopyDone/CopyFail sent before this reply came (pipelined behind the COPY) already
        // ended it for the client: the session is not in COPY IN.
        let ended = self
            .expects
            .get(self.copy_region_end())
            .is_some_and(|e| e.kind == ExpectKind::CopyEnd);
        if !ended {
            events.push(Event::CopyIn { extended });
        }
        self.copy_started_syncs();
    }

    /// The COPY IN the front statement started ended: with success, every Sync sent during it
    /// was ignored; with an error, those sent after COPY data may still be answered.
    pub(super) fn copy_ended(&mut self, failed: bool, events: &mut Vec<Event>) {
        self.copy_in = false;
        if !failed {
            let end = self.copy_region_end();
            let mut i = 1;
            let mut end = end;
            while i < end {
                if self.expects[i].optional {
                    self.expects.remove(i);
                    end -= 1;
                } else {
                    i += 1;
                }
            }
        }
        events.push(Event::CopyInEnded);
    }

    /// Where the messages sent during the COPY at the front end: at its CopyEnd marker, or at
    /// the first message other than Sync (which ends the COPY: it fails it, or the COPY had
    /// already failed and the server reads it as usual), or at the end of the queue.
    fn copy_region_end(&self) -> usize {
        self.expects
            .iter()
            .skip(1)
            .position(|e| e.kind != ExpectKind::Sync)
            .map_or(self.expects.len(), |i| i + 1)
    }

    /// "The backend will ignore Flush and Sync messages received during copy-in mode": the
    /// Syncs sent after the statement now in COPY IN and before its CopyDone/CopyFail get no
    /// ReadyForQuery — unless the COPY fails before the server reads them, which only a Sync
    /// sent after COPY data can see: those become optional.
    fn copy_started_syncs(&mut self) {
        let mut end = self.copy_region_end();
        let mut i = 1;
        while i < end {
            let e = &mut self.expects[i];
            if e.kind == ExpectKind::Sync && !e.after_copy_data {
                self.expects.remove(i);
                end -= 1;
                continue;
            }
            if e.kind == ExpectKind::Sync {
                e.optional = true;
            }
            i += 1;
        }
    }
}
