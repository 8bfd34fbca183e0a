//! Where a session stands with its server connection: transaction status, COPY, an extended
//! sequence awaiting its Sync, a deferred `BEGIN`, pins. One value with one method per
//! transition, and the one answer to "may the connection go back to the pool now?".

use bytes::BytesMut;

use crate::classify::{PinReason, PinSet};
use crate::router::decision::Reason;

/// The transaction status of the last ReadyForQuery the client got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InBlock,
    /// `E`: in a failed transaction block (statements are refused until it ends).
    Failed,
}

impl TxnStatus {
    /// From ReadyForQuery's status byte; anything unknown counts as a transaction (the
    /// cautious reading: the connection stays with the client).
    pub fn from_byte(status: u8) -> Self {
        match status {
            b'I' => TxnStatus::Idle,
            b'E' => TxnStatus::Failed,
            _ => TxnStatus::InBlock,
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            TxnStatus::Idle => b'I',
            TxnStatus::InBlock => b'T',
            TxnStatus::Failed => b'E',
        }
    }
}

/// COPY FROM STDIN as the session knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// No COPY FROM STDIN is taking the client's messages.
    None,
    /// The server said CopyInResponse and the client has not ended the COPY yet: every client
    /// message goes to the held connection as it is. `extended`: started by an Execute.
    In { extended: bool },
}

/// One session's state with respect to its server connection.
#[derive(Debug)]
pub struct State {
    pub txn: TxnStatus,
    pub copy: Copy,
    /// An extended-protocol sequence reached the held connection without its Sync (it ended
    /// in Flush, or an Execute started COPY and the server ignored the Sync behind it): until
    /// the client's Sync, the connection is the client's.
    pub awaiting_sync: bool,
    /// COPY data was sent since the last statement: a Sync sent now may be answered or not,
    /// depending on when a failing COPY fails.
    pub copy_data_sent: bool,
    /// A lone `BEGIN` answered by pgroute and not sent yet: it goes in front of the
    /// transaction's first statement, whose node is chosen then.
    deferred_begin: Option<BytesMut>,
    /// State on the held connection that cannot move (it is kept until released).
    pub pins: PinSet,
    /// `pool.mode = "session"`: the connection is the session's until it ends.
    pub session_mode: bool,
}

impl State {
    pub fn new(session_mode: bool) -> Self {
        State {
            txn: TxnStatus::Idle,
            copy: Copy::None,
            awaiting_sync: false,
            copy_data_sent: false,
            deferred_begin: None,
            pins: PinSet::EMPTY,
            session_mode,
        }
    }

    /// Why the connection stays with the client between units whatever comes next, if it does.
    pub fn kept_for(&self) -> Option<Reason> {
        if self.session_mode {
            Some(Reason::SessionMode)
        } else if self.txn != TxnStatus::Idle {
            Some(Reason::Transaction)
        } else if !self.pins.is_empty() {
            Some(Reason::Pinned)
        } else if self.awaiting_sync || self.copy != Copy::None {
            Some(Reason::OpenSequence)
        } else {
            None
        }
    }

    /// Whether the connection stays with the client between units, whatever comes next.
    pub fn keeps_connection(&self) -> bool {
        self.kept_for().is_some()
    }

    /// May the held connection go back to the pool now? `relay_idle`: no reply is still due.
    pub fn may_release(&self, relay_idle: bool) -> bool {
        relay_idle && !self.keeps_connection()
    }

    /// Whether a failed server connection takes server state with it (a transaction, pins):
    /// the session cannot go on, as PostgreSQL's own would not.
    pub fn loses_state_with_server(&self) -> bool {
        self.txn != TxnStatus::Idle || !self.pins.is_empty()
    }

    /// A unit outside a transaction, nothing pinned: a read may be retried elsewhere.
    pub fn retry_allowed(&self) -> bool {
        self.txn == TxnStatus::Idle && self.pins.is_empty()
    }

    /// ReadyForQuery with this status reached the client.
    pub fn on_ready(&mut self, status: u8) {
        self.txn = TxnStatus::from_byte(status);
    }

    /// A unit went to the held connection: `synced` when it ends with Sync (or is a simple
    /// Query); after a Flush the sequence is still open.
    pub fn on_unit_sent(&mut self, synced: bool) {
        self.awaiting_sync = !synced;
        // `copy_data_sent` stays: a Sync in a later unit, with no Execute in between, still
        // comes after that COPY data (see `Expect::after_copy_data`).
    }

    /// The server entered COPY IN.
    pub fn on_copy_in(&mut self, extended: bool) {
        self.copy = Copy::In { extended };
        // The Sync behind the Execute was ignored: the client's next one closes the sequence.
        self.awaiting_sync |= extended;
    }

    /// The client's CopyDone/CopyFail went to the server, or the server left COPY (error).
    pub fn on_copy_end(&mut self) {
        self.copy = Copy::None;
    }

    /// The held connection is gone (failed or given back).
    pub fn on_connection_gone(&mut self) {
        self.copy = Copy::None;
        self.awaiting_sync = false;
        self.copy_data_sent = false;
    }

    /// The pins a completed statement adds and releases. Returns whether they changed.
    pub fn on_pins(&mut self, pin: Option<PinReason>, releases: PinSet) -> bool {
        let before = self.pins;
        if let Some(reason) = pin {
            self.pins = self.pins.union(PinSet::of(reason));
        }
        self.pins = self.pins.without(releases);
        self.pins != before
    }

    /// Whether a lone `BEGIN` may be answered now and sent with the next statement: nothing
    /// held or in flight, no transaction, nothing pinned.
    pub fn may_defer_begin(&self, holding: bool, batch_empty: bool) -> bool {
        !holding
            && batch_empty
            && self.txn == TxnStatus::Idle
            && self.pins.is_empty()
            && !self.session_mode
    }

    /// pgroute answered a lone `BEGIN` (the client now sees a transaction).
    pub fn defer_begin(&mut self, frame: BytesMut) {
        self.txn = TxnStatus::InBlock;
        self.deferred_begin = Some(frame);
    }

    pub fn has_deferred_begin(&self) -> bool {
        self.deferred_begin.is_some()
    }

    /// The deferred `BEGIN`, to send in front of the transaction's first statement.
    pub fn take_deferred_begin(&mut self) -> Option<BytesMut> {
        self.deferred_begin.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_autocommit_statement_releases_at_ready_for_query() {
        let mut s = State::new(false);
        s.on_unit_sent(true);
        assert!(!s.may_release(false), "replies still due");
        s.on_ready(b'I');
        assert!(s.may_release(true));
    }

    #[test]
    fn a_transaction_keeps_the_connection_until_it_ends() {
        let mut s = State::new(false);
        s.on_unit_sent(true);
        s.on_ready(b'T');
        assert!(!s.may_release(true));
        s.on_ready(b'E');
        assert_eq!(s.txn, TxnStatus::Failed);
        assert!(!s.may_release(true));
        assert!(s.loses_state_with_server());
        s.on_ready(b'I');
        assert!(s.may_release(true));
    }

    #[test]
    fn a_flush_ended_batch_keeps_the_connection_until_the_sync() {
        let mut s = State::new(false);
        s.on_unit_sent(false);
        assert!(s.awaiting_sync);
        assert!(!s.may_release(true));
        s.on_unit_sent(true);
        assert!(s.may_release(true));
    }

    #[test]
    fn extended_copy_after_an_error_waits_for_the_clients_sync() {
        let mut s = State::new(false);
        // Parse/Bind/Execute/Sync of COPY FROM STDIN: the unit ends in Sync…
        s.on_unit_sent(true);
        // …but the server ignores that Sync in COPY IN.
        s.on_copy_in(true);
        assert_eq!(s.copy, Copy::In { extended: true });
        assert!(!s.may_release(true));
        // The COPY fails: the server discards everything up to the client's next Sync.
        s.on_copy_end();
        assert!(!s.may_release(true), "still waiting for the client's Sync");
        s.on_unit_sent(true);
        assert!(s.may_release(true));
    }

    #[test]
    fn simple_copy_releases_once_the_copy_ended() {
        let mut s = State::new(false);
        s.on_unit_sent(true);
        s.on_copy_in(false);
        assert!(!s.may_release(true));
        s.on_copy_end();
        s.on_ready(b'I');
        assert!(s.may_release(true));
    }

    #[test]
    fn pins_hold_the_connection_until_released() {
        let mut s = State::new(false);
        assert!(s.on_pins(Some(PinReason::TempTable), PinSet::EMPTY));
        assert!(s.on_pins(Some(PinReason::Listen), PinSet::EMPTY));
        assert!(!s.may_release(true));
        assert!(s.on_pins(None, PinSet::of(PinReason::Listen)));
        assert!(!s.may_release(true), "the temp table still pins");
        assert!(!s.on_pins(None, PinSet::of(PinReason::Listen)));
        s.on_pins(None, PinSet::ALL);
        assert!(s.may_release(true));
    }

    #[test]
    fn session_mode_never_releases() {
        let s = State::new(true);
        assert!(!s.may_release(true));
        assert!(!s.may_defer_begin(false, true));
    }

    #[test]
    fn a_deferred_begin_opens_the_transaction_for_the_client() {
        let mut s = State::new(false);
        assert!(s.may_defer_begin(false, true));
        assert!(
            !s.may_defer_begin(true, true),
            "not while a connection is held"
        );
        assert!(
            !s.may_defer_begin(false, false),
            "not behind unsent extended messages"
        );
        s.defer_begin(BytesMut::from(&b"Q"[..]));
        assert_eq!(s.txn, TxnStatus::InBlock);
        assert!(s.has_deferred_begin());
        assert!(!s.may_defer_begin(false, true));
        assert!(s.take_deferred_begin().is_some());
        assert!(!s.has_deferred_begin());
    }

    #[test]
    fn copy_data_stays_noted_across_units_until_the_connection_goes() {
        // Execute (COPY), CopyData, Sync; then a lone Sync: it too comes after the data.
        let mut s = State::new(false);
        s.copy_data_sent = true;
        s.on_unit_sent(true);
        assert!(s.copy_data_sent);
        s.on_connection_gone();
        assert!(!s.copy_data_sent);
    }

    #[test]
    fn a_lost_connection_clears_what_belonged_to_it() {
        let mut s = State::new(false);
        s.on_unit_sent(false);
        s.on_copy_in(true);
        s.copy_data_sent = true;
        s.on_connection_gone();
        assert_eq!(s.copy, Copy::None);
        assert!(!s.awaiting_sync && !s.copy_data_sent);
        assert!(s.may_release(true));
    }

    #[test]
    fn unknown_status_bytes_count_as_a_transaction() {
        assert_eq!(TxnStatus::from_byte(b'?'), TxnStatus::InBlock);
        for b in [b'I', b'T', b'E'] {
            assert_eq!(TxnStatus::from_byte(b).byte(), b);
        }
    }
}
