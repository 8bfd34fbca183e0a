//! Server → client: the replies pgroute expects from a server connection, in order, and how each
//! server message is forwarded, swallowed (replies to messages pgroute injected) or completed by
//! one pgroute synthesizes (replies to client messages it answered itself).

use std::collections::VecDeque;

use std::sync::Arc;

use bytes::BytesMut;

mod copy;
mod expect;

pub use expect::{Event, Expect, ExpectKind, UnnamedChange};

use super::reported::Reported;
use super::statements::Statement;
use crate::protocol::{messages, tag, FrameError, Frames};

/// The replies still to come on one server connection.
#[derive(Debug, Default)]
pub struct Relay {
    pub expects: VecDeque<Expect>,
    /// While a read may still be retried elsewhere, the replies that come before any result
    /// (ParseComplete, BindComplete, descriptions) are held back here instead of sent.
    holding: bool,
    held: BytesMut,
    /// The server is in COPY IN mode.
    copy_in: bool,
    /// ReadyForQuery messages taken by optional Syncs in the current run of Syncs: each may
    /// have been the answer to a later, required Sync of the run.
    optional_answered: usize,
    /// After an error in an extended sequence the server "reads and discards messages until a
    /// Sync is reached": set until that Sync's ReadyForQuery.
    discarding: bool,
    /// (server pid, client pid): NotificationResponse raised by this server connection itself
    /// carries the pid the client was given.
    pids: (i32, i32),
    /// Replies to quiet messages, sent only if an error or notice follows them.
    unflushed: BytesMut,
}

/// The server sent a message pgroute did not expect: the connection is out of step.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("unexpected message {0:?} from server")]
    Unexpected(char),
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The server ended the connection (FATAL) before the client saw any reply of a read
    /// that may be retried.
    #[error("server ended the connection before replying")]
    FatalBeforeReply,
}

impl Relay {
    /// This relay with nothing expected or held, its storage kept for reuse.
    pub fn reset(mut self) -> Self {
        self.expects.clear();
        self.held.clear();
        self.holding = false;
        self.copy_in = false;
        self.optional_answered = 0;
        self.discarding = false;
        self.unflushed.clear();
        self
    }

    /// Sets the server connection's pid and the pid the client knows (for NOTIFY).
    pub fn set_pids(&mut self, server: i32, client: i32) {
        self.pids = (server, client);
    }

    pub fn is_idle(&self) -> bool {
        self.expects.is_empty()
    }

    /// Sends the synthetic replies now due (those whose turn has come without a server reply).
    pub fn settle(&mut self, out: &mut BytesMut) {
        self.settle_front(out, None);
    }

    /// Will the server still answer anything? Not while it discards messages up to a Sync
    /// that was never sent (the client said Terminate behind them).
    pub fn awaits_replies(&self) -> bool {
        !self.expects.is_empty()
            && (!self.discarding || self.expects.iter().any(|e| e.kind == ExpectKind::Sync))
    }

    /// Will the server answer what is outstanding without the client's next messages? Not
    /// after an optional Sync took a ReadyForQuery that may have been the next Sync's: only a
    /// later reply tells (see `answer_after_optional`).
    pub fn answers_without_more(&self) -> bool {
        self.awaits_replies() && self.optional_answered == 0
    }

    /// Processes every complete frame received: visible bytes are appended to `out`, and what
    /// the session must act on to `events`. Returns whether the client was sent any reply to
    /// its statements (asynchronous notices and held-back preludes do not count).
    pub fn process(
        &mut self,
        mut frames: Frames<'_>,
        out: &mut BytesMut,
        events: &mut Vec<Event>,
        reported: &mut Reported,
    ) -> Result<bool, RelayError> {
        let mut replied = false;
        let result = loop {
            let frame = match frames.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break Ok(()),
                Err(e) => break Err(RelayError::from(e)),
            };
            let t = frame[0];
            match t {
                // Asynchronous messages may come at any time and always reach the client.
                tag::NOTICE => {
                    // pgroute's own replies (a Close of an unknown name) whose turn has come
                    // were the server's before this notice of a later message.
                    self.settle_front(out, None);
                    self.flush_quiet(out);
                    out.extend_from_slice(frame);
                    continue;
                }
                tag::PARAMETER_STATUS => {
                    reported.on_server_report(frame);
                    continue;
                }
                tag::NOTIFICATION => {
                    self.notification(frame, out);
                    continue;
                }
                _ => {}
            }
            let before = out.len();
            if let Err(e) = self.process_one(frame, out, events, reported) {
                break Err(e);
            }
            self.hold_or_release(out, before, is_prelude(t));
            // Replies to pgroute's own statements produce nothing and do not count.
            replied |= out.len() > before && !self.holding;
        };
        drop(frames);
        result?;
        let before = out.len();
        self.settle_front(out, None);
        self.hold_or_release(out, before, true);
        Ok(replied)
    }

    /// Holds back replies that precede any result while a retry is possible.
    pub fn hold_prelude(&mut self) {
        self.holding = true;
    }

    /// Moves what one frame produced (`out[before..]`) into the held prelude, or, once a real
    /// result comes, sends the held prelude ahead of it and stops holding.
    fn hold_or_release(&mut self, out: &mut BytesMut, before: usize, prelude: bool) {
        if !self.holding || out.len() == before {
            return;
        }
        // Copies, not splits: both buffers keep their storage.
        self.held.extend_from_slice(&out[before..]);
        out.truncate(before);
        if !prelude {
            out.extend_from_slice(&self.held);
            self.held.clear();
            self.holding = false;
        }
    }

    /// What quiet messages' replies were held: PostgreSQL flushes them with an error or notice.
    fn flush_quiet(&mut self, out: &mut BytesMut) {
        if !self.unflushed.is_empty() {
            out.extend_from_slice(&self.unflushed);
            self.unflushed.clear();
        }
    }

    /// Relays a NotificationResponse; one raised by this very server connection names the
    /// client's pid (the one in its BackendKeyData), so that clients can skip their own.
    fn notification(&self, frame: &[u8], out: &mut BytesMut) {
        let at = out.len();
        out.extend_from_slice(frame);
        let (server, client) = self.pids;
        if frame.len() >= 9 && server != 0 && frame[5..9] == server.to_be_bytes() {
            out[at + 5..at + 9].copy_from_slice(&client.to_be_bytes());
        }
    }

    /// Sends synthetic replies now due and drops markers at the front; a frame other than
    /// ReadyForQuery settles the optional Syncs ahead of it: they were ignored (or their
    /// answer was taken by an optional one before them, see `optional_answered`).
    fn settle_front(&mut self, out: &mut BytesMut, t: Option<u8>) {
        loop {
            let Some(front) = self.expects.front() else {
                return;
            };
            match &front.kind {
                ExpectKind::Synthetic(bytes) if front.quiet => {
                    self.unflushed.extend_from_slice(bytes)
                }
                ExpectKind::Synthetic(bytes) => out.extend_from_slice(bytes),
                ExpectKind::CopyEnd => {}
                ExpectKind::Sync if t.is_some_and(|t| t != tag::READY_FOR_QUERY) => {
                    if !front.optional {
                        if self.optional_answered == 0 {
                            return;
                        }
                        self.optional_answered -= 1;
                    }
                }
                _ => return,
            }
            self.expects.pop_front();
        }
    }

    /// A reply that cannot be the front message's, after an optional Sync took a
    /// ReadyForQuery: that Sync was ignored during the COPY, and the ReadyForQuery it took
    /// answered the next Sync, the messages between being discarded after the COPY's error
    /// ("reads and discards messages until a Sync is reached"). They are skipped, that Sync is
    /// done, and this reply is for what follows it. (An error fits any message: it is taken
    /// as the front one's.)
    fn answer_after_optional(&mut self, t: u8, out: &mut BytesMut, events: &mut Vec<Event>) {
        while self.optional_answered > 0
            && t != tag::ERROR
            && self.expects.front().is_some_and(|f| !f.may_answer(t))
        {
            self.optional_answered -= 1;
            self.skip_discarded(events);
            self.expects.pop_front();
            self.settle_front(out, Some(t));
        }
    }

    fn process_one(
        &mut self,
        frame: &[u8],
        out: &mut BytesMut,
        events: &mut Vec<Event>,
        reported: &mut Reported,
    ) -> Result<(), RelayError> {
        let t = frame[0];
        if self.discarding {
            self.skip_discarded(events);
        }
        self.settle_front(out, Some(t));
        self.answer_after_optional(t, out, events);
        if t == tag::ERROR && messages::is_fatal(frame) {
            return self.relay_fatal(frame, out, events);
        }
        if self.expects.is_empty() {
            return Err(RelayError::Unexpected(t as char));
        }
        let copy_ended = self.copy_in && (t == tag::ERROR || t == tag::COMMAND_COMPLETE);
        if copy_ended {
            self.copy_ended(t == tag::ERROR, events);
        }
        let Some(front) = self.expects.front_mut() else {
            return Err(RelayError::Unexpected(t as char));
        };
        if let Some(reply) = &front.replace {
            // The server ran the empty query in place of pgroute's own statement.
            if t != tag::READY_FOR_QUERY {
                return Ok(());
            }
            out.extend_from_slice(reply);
        }
        if t == tag::ERROR {
            self.relay_error(frame, out, events);
            return Ok(());
        }
        if front.kind == ExpectKind::Query && matches!(t, tag::COMMAND_COMPLETE | tag::EMPTY_QUERY)
        {
            front.results += 1;
        }
        let completes = front.completed_by(t);
        if t == tag::READY_FOR_QUERY && !completes {
            return Err(RelayError::Unexpected(t as char));
        }
        forward(front, frame, out, &mut self.unflushed, reported);
        if t == tag::DATA_ROW {
            own_row(&front.kind, frame, events);
        }
        if t == tag::COPY_IN {
            let extended = front.kind == ExpectKind::Execute;
            self.copy_started(extended, events);
        }
        if completes {
            self.complete(t, frame, events, reported);
        }
        Ok(())
    }

    /// "FATAL … the server closes the connection": relayed whoever it was for, unless nothing
    /// reached the client yet and the read may still go elsewhere.
    fn relay_fatal(
        &mut self,
        frame: &[u8],
        out: &mut BytesMut,
        events: &mut Vec<Event>,
    ) -> Result<(), RelayError> {
        if self.holding {
            return Err(RelayError::FatalBeforeReply);
        }
        out.extend_from_slice(frame);
        events.push(Event::Fatal);
        Ok(())
    }

    /// An ErrorResponse for the front message. pgroute's own statements (parameter replay, LSN
    /// capture) fail quietly; a Parse it injected fails for the client's Bind, which must see
    /// why; an error naming pgroute's statement names the client's.
    fn relay_error(&mut self, frame: &[u8], out: &mut BytesMut, events: &mut Vec<Event>) {
        if self.expects.front().is_some_and(|f| f.quiet) {
            self.flush_quiet(out);
        }
        let Some(front) = self.expects.front_mut() else {
            return;
        };
        let client_parse = front.visible;
        if let (true, Some(change)) = (client_parse, front.unnamed.as_mut()) {
            // PostgreSQL dropped the old unnamed statement before this Parse failed. (pgroute's
            // own Parse of the session's statement failing leaves it the session's.)
            change.replaces = None;
            change.was_on_conn = true;
        }
        let to_client = front.rename.is_some() || front.visible || front.kind == ExpectKind::Parse;
        if let Some((ours, theirs)) = &front.rename {
            out.extend_from_slice(&messages::rename_in_error(frame, ours, theirs));
        } else if to_client {
            out.extend_from_slice(frame);
        } else {
            tracing::warn!(
                code = messages::error_code(frame).unwrap_or(""),
                "pgroute's own statement failed on the server"
            );
        }
        if to_client {
            let mut code = [0u8; 5];
            if let Some(c) = messages::error_code(frame).filter(|c| c.len() == 5) {
                code.copy_from_slice(c.as_bytes());
            }
            events.push(Event::ServerError(code));
        }
        self.on_error(out, events);
    }

    fn complete(&mut self, t: u8, frame: &[u8], events: &mut Vec<Event>, reported: &mut Reported) {
        let Some(done) = self.expects.pop_front() else {
            return;
        };
        if t == tag::READY_FOR_QUERY {
            self.discarding = false;
        }
        match (done.kind == ExpectKind::Sync, done.optional) {
            (true, true) => self.optional_answered += 1,
            (true, false) => {}
            (false, _) => self.optional_answered = 0,
        }
        if let (Some(class), false) = (&done.class, done.failed) {
            if class.has_session_effects() && t != tag::PORTAL_SUSPENDED {
                if t != tag::READY_FOR_QUERY {
                    reported.on_changes(&class.params);
                }
                events.push(Event::Completed(class.clone()));
            }
        }
        if t == tag::READY_FOR_QUERY && done.visible {
            events.push(Event::Ready(frame.get(5).copied().unwrap_or(b'I')));
        }
    }

    /// "When an error is detected while processing any extended-query message, the backend
    /// issues ErrorResponse, then reads and discards messages until a Sync is reached."
    /// So every reply expected before the next Sync will never come.
    fn on_error(&mut self, _out: &mut BytesMut, events: &mut Vec<Event>) {
        let Some(front) = self.expects.front_mut() else {
            return;
        };
        if front.kind != ExpectKind::Sync && front.is_sync_like() {
            // A simple Query goes on to its ReadyForQuery; its statements were rolled back.
            front.failed = true;
            return;
        }
        // Everything up to the Sync is discarded, a simple Query sent in between too; if the
        // Sync has not been sent yet, what is sent before it will be discarded as well.
        self.discarding = true;
        self.skip_discarded(events);
    }

    /// While the server discards everything up to a Sync not sent yet, what was just sent
    /// will be discarded too: dropped now, so that the session learns at once what became of
    /// its statements (a Parse waiting on one would otherwise wait for a reply that only the
    /// client's Sync behind it brings).
    pub fn skip_unsynced_discarded(&mut self, events: &mut Vec<Event>) {
        if self.discarding && !self.expects.iter().any(|e| e.kind == ExpectKind::Sync) {
            self.skip_discarded(events);
        }
    }

    /// Drops the replies the server will not send while it discards messages until a Sync.
    fn skip_discarded(&mut self, events: &mut Vec<Event>) {
        // What a client statement name means after the messages skipped so far (a skipped
        // Close leaves it as it was; a skipped Parse leaves it as the messages before it did).
        // The messages of one name's group are skipped together: a later group waits until the
        // fate of the name is known (see `Session::statement_in_doubt`).
        let mut names: Vec<(String, Option<Arc<Statement>>)> = Vec::new();
        while let Some(e) = self.expects.front() {
            if e.kind == ExpectKind::Sync {
                break;
            }
            if let Some(e) = self.expects.pop_front() {
                if let Some((name, stmt)) = &e.forget_client {
                    // A Close of the statement this Parse would have made, skipped as well,
                    // leaves nothing to restore: the statement never existed.
                    for later in self.expects.iter_mut() {
                        if later
                            .restore
                            .as_ref()
                            .is_some_and(|(n, s)| n == name && Arc::ptr_eq(s, stmt))
                        {
                            later.restore = None;
                        }
                    }
                    let before = names.iter().rev().find(|(n, _)| n == name);
                    let meaning = before.and_then(|(_, s)| s.clone());
                    events.push(Event::Named(name.clone(), meaning));
                }
                if let Some(id) = e.forget_server {
                    events.push(Event::Forget(id));
                }
                if let Some((name, stmt)) = e.restore {
                    names.push((name.clone(), Some(stmt.clone())));
                    events.push(Event::Named(name, Some(stmt)));
                }
                if let Some(change) = e.unnamed {
                    self.pass_unnamed(change, events);
                }
            }
        }
    }

    /// A Parse of the unnamed statement did not replace it (discarded, or failed): the next
    /// such Parse in flight now replaces what this one would have, or if there is none the
    /// session learns what its unnamed statement is.
    fn pass_unnamed(&mut self, change: UnnamedChange, events: &mut Vec<Event>) {
        match self.expects.iter_mut().find_map(|e| e.unnamed.as_mut()) {
            Some(later) => *later = change,
            None => events.push(Event::Unnamed(change.replaces, change.was_on_conn)),
        }
    }

    /// The client has every result it asked for and waits only for one ReadyForQuery: a Sync,
    /// or a Query whose statements have all completed (pgroute's own statements aside).
    pub fn only_ready_missing(&self) -> bool {
        let mut visible = self.expects.iter().filter(|e| e.visible);
        let Some(last) = visible.next() else {
            return false;
        };
        if visible.next().is_some() || last.failed {
            return false;
        }
        match (&last.kind, &last.class) {
            (ExpectKind::Sync, _) => true,
            (ExpectKind::Query, Some(class)) => {
                class.statements > 0 && last.results >= class.statements
            }
            _ => false,
        }
    }

    /// Only replies to pgroute's own statements are still to come (none for the client).
    pub fn only_hidden_pending(&self) -> bool {
        !self.expects.is_empty() && self.expects.iter().all(|e| !e.visible)
    }

    /// Only pgroute's own LSN capture is still to be answered.
    pub fn only_capture_pending(&self) -> bool {
        self.expects.len() == 1 && self.expects[0].kind == ExpectKind::CaptureLsn
    }

    /// Number of ReadyForQuery the client still waits for.
    pub fn pending_syncs(&self) -> usize {
        self.expects
            .iter()
            .filter(|e| e.visible && matches!(e.kind, ExpectKind::Sync | ExpectKind::Query))
            .count()
    }
}

/// Replies that come before a statement produces anything (held back while a read may be
/// retried on another node).
fn is_prelude(t: u8) -> bool {
    matches!(
        t,
        tag::PARSE_COMPLETE
            | tag::BIND_COMPLETE
            | tag::CLOSE_COMPLETE
            | tag::PARAMETER_DESCRIPTION
            | tag::ROW_DESCRIPTION
            | tag::NO_DATA
    )
}

mod rows;
use rows::own_row;

#[cfg(test)]
mod tests;

/// Passes a reply to `front` on to the client (if it is the client's), or holds it while the
/// client has said Terminate (PostgreSQL would not flush it). Before a ReadyForQuery the client
/// gets the ParameterStatus of what changed for it.
fn forward(
    front: &Expect,
    frame: &[u8],
    out: &mut BytesMut,
    unflushed: &mut BytesMut,
    reported: &mut Reported,
) {
    if !front.visible {
        return;
    }
    if front.quiet {
        unflushed.extend_from_slice(frame);
        return;
    }
    if frame[0] == tag::READY_FOR_QUERY {
        // A simple Query's changes, known before its report (an Execute's came with its
        // CommandComplete).
        if let (Some(class), false) = (&front.class, front.failed) {
            reported.on_changes(&class.params);
        }
        reported.flush(out);
    }
    out.extend_from_slice(frame);
}
