//! COPY FROM STDIN on the client side: where CopyData, CopyDone and CopyFail go,
//! and what the other client messages mean while the server is in COPY IN.

use bytes::{Bytes, BytesMut};

use super::extended::ExtMsg;
use super::local;
use super::relay::{Expect, ExpectKind};
use super::Session;
use crate::protocol::{messages, Body};

impl Session {
    /// A client message while the server is in COPY IN (it said CopyInResponse and the client
    /// has not ended the COPY). It goes to the server as it is:
    /// - CopyData, and Flush/Sync, which "the backend will ignore … during copy-in mode";
    /// - CopyDone/CopyFail, which end the COPY;
    /// - anything else, which makes the server fail the COPY ("unexpected message type … during
    ///   COPY from stdin", then FATAL: the session ends) — unless the COPY has already failed
    ///   on the server (bad data), which then answers the message as any other: it is expected
    ///   as such.
    pub(super) fn forward_during_copy(&mut self, frame: BytesMut, to_server: &mut BytesMut) {
        if frame[0] == b'Q' {
            if let Some(reply) = self.own_reply_during_copy(&frame) {
                return self.send_own_during_copy(reply, to_server);
            }
        }
        let Some(h) = self.held.as_mut() else {
            return;
        };
        to_server.extend_from_slice(&frame);
        match frame[0] {
            b'd' => self.state.copy_data_sent = true,
            b'H' => {}
            b'S' => h.relay.sync_during_copy(self.state.copy_data_sent),
            b'c' | b'f' => {
                h.relay
                    .expects
                    .push_back(Expect::hidden(ExpectKind::CopyEnd));
                self.state.on_copy_end();
            }
            t => {
                let kind = match t {
                    b'P' => ExpectKind::Parse,
                    b'B' => ExpectKind::Bind,
                    b'D' => ExpectKind::Describe,
                    b'E' => ExpectKind::Execute,
                    b'C' => ExpectKind::Close,
                    _ => ExpectKind::Query,
                };
                h.relay.expects.push_back(Expect::new(kind));
                self.state.on_copy_end();
            }
        }
    }

    /// CopyData/CopyDone/CopyFail outside a COPY the session knows of. A client may send COPY
    /// data right behind its COPY statement, before the server's CopyInResponse, even before
    /// the Sync of an extended-protocol COPY: it goes with that statement, in order. Outside
    /// COPY the server ignores these ("Accept but ignore these messages, per protocol spec"),
    /// so with nothing in flight they are dropped here.
    pub(super) fn copy_message(&mut self, frame: BytesMut, to_server: &mut BytesMut) {
        let ends = frame[0] != b'd';
        if !self.batch.is_empty() && !self.batch.complete {
            let kind = ends.then_some(ExpectKind::CopyEnd);
            self.batch.msgs.push(ExtMsg::Forward { frame, kind });
            return;
        }
        let Some(h) = self.held.as_mut() else {
            return;
        };
        if h.relay.is_idle() {
            return;
        }
        to_server.extend_from_slice(&frame);
        if ends {
            h.relay
                .expects
                .push_back(Expect::hidden(ExpectKind::CopyEnd));
        } else {
            self.state.copy_data_sent = true;
        }
    }

    /// pgroute's reply to a Query of its own statements (`SHOW pgroute.lsn`) sent while the
    /// server is in COPY IN, as it will be if the server has already failed the COPY and runs
    /// the query (the COPY's effects then are none). If the COPY still runs, the Query fails it
    /// and ends the session, and the reply is never sent.
    fn own_reply_during_copy(&mut self, frame: &[u8]) -> Option<Bytes> {
        let text = Body::of_frame(frame).cbytes("Query").ok()?;
        let sql = std::str::from_utf8(text).ok()?;
        let class = self.proxy.classes.classify_text(Some(sql));
        if !local::answers(sql, &class) {
            return None;
        }
        let mut reply = BytesMut::new();
        local::reply(self, sql, &class, &mut reply);
        Some(reply.freeze())
    }

    /// Sends an empty Query in place of pgroute's own statement: the server treats it as it
    /// would the original (it fails a running COPY; after a failed one it answers it), and its
    /// own answer is replaced by `reply`.
    fn send_own_during_copy(&mut self, reply: Bytes, to_server: &mut BytesMut) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        messages::query(to_server, "");
        let mut expect = Expect::new(ExpectKind::Query);
        expect.replace = Some(reply);
        h.relay.expects.push_back(expect);
        self.state.on_copy_end();
        // Run by a server whose COPY already failed, it destroys the unnamed statement.
        self.unnamed_on_held = false;
    }
}
