//! The session loop: client messages in (a unit of work at a time, see [`super::dispatch`]),
//! server replies relayed, and the client always read, so a client that leaves is noticed.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::state::{Copy, TxnStatus};
use super::Session;
use crate::backend::BackendError;
use crate::error::{Error, Limit, Violation};

/// Client bytes read ahead while a unit waits for the held connection.
const BLOCKED_READ_LIMIT: usize = 1 << 20;

/// How long replies still due are relayed after the client said Terminate or closed its side.
const CLOSING_GRACE: Duration = Duration::from_secs(5);

/// What the session loop does after one client message.
enum Step {
    Next,
    /// The message waits for the held connection.
    Blocked,
    /// The client said Terminate.
    Terminate,
}

/// Outcome of reading from whichever side spoke first.
enum Input {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    /// A `[limits]` timeout passed first.
    Timeout(Wait),
    /// The closing grace passed: look again.
    Tick,
}

/// The `[limits]` timeouts a session waits under.
#[derive(Debug, Default)]
pub(super) struct Timeouts {
    client_idle: Option<Duration>,
    idle_in_transaction: Option<Duration>,
    query: Option<Duration>,
    /// When the work in flight is cancelled (`query_timeout`).
    query_deadline: Option<Instant>,
    /// The CancelRequest for the work in flight was sent.
    cancelled: bool,
}

impl Timeouts {
    pub(super) fn new(limits: &crate::config::LimitsConfig) -> Self {
        Timeouts {
            client_idle: limits.client_idle_timeout,
            idle_in_transaction: limits.idle_in_transaction_timeout,
            query: limits.query_timeout,
            ..Timeouts::default()
        }
    }
}

/// What the session waits for, under which timeout.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// The client, with nothing in flight: `client_idle_timeout` or
    /// `idle_in_transaction_timeout`.
    Idle { in_transaction: bool },
    /// The server's reply: `query_timeout`.
    Reply,
}

impl Session {
    /// After Terminate (or the client's close): has everything due reached the client, or is
    /// the grace over? Replies pgroute gives itself (no server reply to wait for) are due now.
    async fn closed(&mut self, deadline: Instant) -> Result<bool, Error> {
        if let Some(h) = self.held.as_mut() {
            h.relay.settle(self.client.out());
            self.flush_client().await?;
        }
        let pending = self.held.as_ref().is_some_and(|h| h.relay.awaits_replies());
        Ok(!pending || self.state.copy != Copy::None || Instant::now() >= deadline)
    }

    pub(super) async fn run(&mut self) -> Result<(), Error> {
        // Set once the client has said Terminate or closed its side: the replies to what it
        // sent before are still relayed (PostgreSQL answers every message it read), up to this
        // deadline, then the session ends.
        let mut closing: Option<Instant> = None;
        loop {
            let (blocked, terminate) = self.process_client().await?;
            self.flush_client().await?;
            if terminate {
                closing.get_or_insert_with(|| Instant::now() + CLOSING_GRACE);
            }
            if let Some(deadline) = closing {
                if self.closed(deadline).await? {
                    return Ok(());
                }
            }
            let input = self.next_input(closing, blocked).await;
            match input {
                Input::Client(Ok(0)) if self.state.copy != Copy::None => {
                    self.client_gone_during_copy().await;
                    return Ok(());
                }
                Input::Client(Ok(0)) => {
                    closing = Some(Instant::now() + CLOSING_GRACE);
                }
                Input::Client(Ok(_)) => {}
                Input::Client(Err(e)) => return Err(Error::Client(e)),
                Input::Server(Ok(0)) => self.lost(BackendError::Closed).await?,
                Input::Server(Err(e)) => self.lost(BackendError::Io(e)).await?,
                Input::Server(Ok(_)) => self.on_server_data().await?,
                Input::Timeout(wait) => self.timed_out(wait)?,
                Input::Tick => {}
            }
            if self.fatal {
                // The server ended the connection with a FATAL the client now has: PostgreSQL
                // closes the client's connection right after it, and so does pgroute.
                self.flush_client().await?;
                return Err(Error::ServerClosed);
            }
        }
    }

    /// Waits for whichever speaks first: the held server, the client, or a timeout. While a unit
    /// waits, the client is still read (up to a bound), so that a client that goes away is
    /// noticed whatever the server is doing.
    async fn next_input(&mut self, closing: Option<Instant>, blocked: bool) -> Input {
        let read_client =
            closing.is_none() && (!blocked || self.client.buffered() < BLOCKED_READ_LIMIT);
        let timeout = if closing.is_none() {
            self.timeout()
        } else {
            None
        };
        // No timer at all unless a timeout applies.
        let expiry = async move {
            match timeout {
                Some((at, wait)) => {
                    tokio::time::sleep_until(at.into()).await;
                    wait
                }
                None => std::future::pending().await,
            }
        };
        match self.held.as_mut() {
            None if timeout.is_none() => Input::Client(self.client.read_more().await),
            None => tokio::select! {
                r = self.client.read_more() => Input::Client(r),
                wait = expiry => Input::Timeout(wait),
            },
            Some(h) => {
                let server = &mut *h.conn;
                let grace = closing.map_or(CLOSING_GRACE, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                // Biased (no random start per poll): the server's replies first.
                tokio::select! {
                    biased;
                    r = server.read_more() => Input::Server(r),
                    r = self.client.read_more(), if read_client => Input::Client(r),
                    _ = tokio::time::sleep(grace), if closing.is_some() => Input::Tick,
                    wait = expiry, if timeout.is_some() => Input::Timeout(wait),
                }
            }
        }
    }

    /// The timeout that applies to the session's wait now, if any, and when it expires.
    fn timeout(&mut self) -> Option<(Instant, Wait)> {
        let t = &mut self.timeouts;
        if self.held.as_ref().is_some_and(|h| h.relay.awaits_replies()) {
            let after = t.query.filter(|_| !t.cancelled)?;
            let at = *t
                .query_deadline
                .get_or_insert_with(|| Instant::now() + after);
            return Some((at, Wait::Reply));
        }
        t.query_deadline = None;
        t.cancelled = false;
        if self.state.copy != Copy::None {
            return None;
        }
        let in_transaction = self.state.txn != TxnStatus::Idle || self.state.has_deferred_begin();
        let after = if in_transaction {
            t.idle_in_transaction?
        } else {
            t.client_idle?
        };
        Some((Instant::now() + after, Wait::Idle { in_transaction }))
    }

    /// A timeout passed: an idle session ends (its server connection, closed with it, rolls
    /// back a transaction); work in flight is cancelled on its server, whose 57014 the client
    /// then gets.
    fn timed_out(&mut self, wait: Wait) -> Result<(), Error> {
        match wait {
            Wait::Idle {
                in_transaction: true,
            } => Err(Limit::IdleInTransaction.into()),
            Wait::Idle {
                in_transaction: false,
            } => Err(Limit::IdleSession.into()),
            Wait::Reply => {
                self.timeouts.cancelled = true;
                let (pid, secret) = self.cancel.key();
                let cancels = self.proxy.cancels.clone();
                tracing::debug!("query_timeout: cancelling the work in flight");
                tokio::spawn(async move { cancels.cancel(pid, secret).await });
                Ok(())
            }
        }
    }

    /// The client closed in the middle of COPY FROM STDIN: PostgreSQL's own COPY reports it
    /// before the session ends, and so does pgroute (the server's COPY is abandoned with the
    /// connection).
    async fn client_gone_during_copy(&mut self) {
        self.send_error(&Error::EofInCopy);
        self.send_error(&Error::SyncLost);
        let _ = self.flush_client().await;
    }

    pub(super) async fn flush_client(&mut self) -> Result<(), Error> {
        self.client.flush().await.map_err(Error::Client)
    }

    /// Handles every complete client message that can be handled now. Returns (blocked,
    /// terminate): blocked when a unit waits for the held connection to finish.
    pub(super) async fn process_client(&mut self) -> Result<(bool, bool), Error> {
        // One buffer, kept across calls, collects everything for the server: one write.
        let mut to_server = std::mem::take(&mut self.to_server);
        let result = self.process_client_into(&mut to_server).await;
        if !to_server.is_empty() {
            if let Some(h) = self.held.as_mut() {
                if let Err(e) = h.conn.write(&to_server).await {
                    to_server.clear();
                    self.to_server = to_server;
                    self.lost(e).await?;
                    return result;
                }
            }
            to_server.clear();
        }
        self.to_server = to_server;
        result
    }

    /// Handles client messages until one has to wait (blocked), the client said Terminate, or
    /// no complete message is left. Returns (blocked, terminate).
    pub(super) async fn process_client_into(
        &mut self,
        to_server: &mut BytesMut,
    ) -> Result<(bool, bool), Error> {
        loop {
            if self.batch.complete {
                if !self.dispatch_batch(to_server).await? {
                    return Ok((true, false));
                }
                continue;
            }
            if let Some(len) = self.client.oversized() {
                let max = self.client.max_message();
                return Err(Limit::MessageSize { len, max }.into());
            }
            let tag = match self.client.peek_frame() {
                Ok(Some(frame)) => frame[0],
                Ok(None) => return Ok((false, false)),
                Err(e) => return Err(e.into()),
            };
            if self.state.copy != Copy::None && self.held.is_some() {
                // COPY FROM STDIN takes every client message, whatever it is.
                let frame = self.split_client()?;
                if frame[0] == b'X' {
                    return Ok((false, true));
                }
                self.forward_during_copy(frame, to_server);
                continue;
            }
            match self.process_message(tag, to_server).await? {
                Step::Next => {}
                Step::Blocked => return Ok((true, false)),
                Step::Terminate => return Ok((false, true)),
            }
        }
    }

    /// Handles the client message at the front of the buffer (type `tag`), outside COPY.
    async fn process_message(&mut self, tag: u8, to_server: &mut BytesMut) -> Result<Step, Error> {
        match tag {
            b'Q' | b'F' if !self.batch.is_empty() => {
                // A Query after extended messages without Sync: send those first.
                self.batch.complete = true;
            }
            b'Q' | b'F' => {
                let sent = if tag == b'Q' {
                    self.dispatch_query(to_server).await?
                } else {
                    self.dispatch_call(to_server).await?
                };
                if !sent {
                    return Ok(Step::Blocked);
                }
            }
            b'P' if self.reparse_in_flight() => return Ok(Step::Blocked),
            b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'H' => {
                let frame = self.split_client()?;
                self.push_extended(frame)?;
            }
            b'd' | b'c' | b'f' => {
                let frame = self.split_client()?;
                self.copy_message(frame, to_server);
            }
            b'X' if !self.batch.is_empty() => {
                // Extended messages without Sync before Terminate: the server runs them,
                // and its errors (which it flushes at once) still reach the client.
                self.batch.complete = true;
                self.batch.closing = true;
            }
            b'X' => return Ok(Step::Terminate),
            t => return Err(Violation::UnexpectedMessage(t as char).into()),
        }
        Ok(Step::Next)
    }

    /// A Parse of a name whose earlier Parse may still fail on the server, or whose Close the
    /// server may still skip (after an error before it): whether the name is taken (42P05) is
    /// only known once those replies are in, so the new Parse waits for them.
    fn reparse_in_flight(&self) -> bool {
        let Some(h) = self.held.as_ref().filter(|h| !h.relay.is_idle()) else {
            return false;
        };
        let frame = self.client.peek_frame().ok().flatten().unwrap_or_default();
        let mut body = crate::protocol::Body::of_frame(frame);
        body.cstr("Parse").is_ok_and(|name| {
            !name.is_empty()
                && (self.statements.contains_key(name)
                    || h.relay
                        .expects
                        .iter()
                        .any(|e| e.restore.as_ref().is_some_and(|(closed, _)| closed == name)))
        })
    }

    pub(super) fn split_client(&mut self) -> Result<BytesMut, Error> {
        Ok(self.client.next_frame()?.ok_or(Violation::Incomplete)?)
    }
}
