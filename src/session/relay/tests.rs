//! Relay unit and property tests.
use super::*;
use crate::backend::view::Lsn;
use crate::session::reported::Reported;
use crate::session::statements::Statement;
use bytes::Bytes;
use std::sync::Arc;

fn frame(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn run(relay: &mut Relay, frames: &[Vec<u8>]) -> (Vec<u8>, Vec<Event>) {
    let mut buf = BytesMut::from(&frames.concat()[..]);
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    relay
        .process(
            Frames::new(&mut buf),
            &mut out,
            &mut events,
            &mut Reported::default(),
        )
        .unwrap();
    (out.to_vec(), events)
}

#[test]
fn injected_replies_are_swallowed_and_synthetic_ones_inserted_in_order() {
    let mut relay = Relay::default();
    relay
        .expects
        .push_back(Expect::synthetic(Bytes::from(frame(b'1', b""))));
    relay.expects.push_back(Expect::hidden(ExpectKind::Parse));
    relay.expects.push_back(Expect::new(ExpectKind::Bind));
    relay.expects.push_back(Expect::new(ExpectKind::Execute));
    relay.expects.push_back(Expect::new(ExpectKind::Sync));
    let server = [
        frame(b'1', b""),
        frame(b'2', b""),
        frame(b'D', b"\0\0"),
        frame(b'C', b"SELECT 1\0"),
        frame(b'Z', b"I"),
    ];
    let (out, events) = run(&mut relay, &server);
    let want = [
        frame(b'1', b""),
        frame(b'2', b""),
        frame(b'D', b"\0\0"),
        frame(b'C', b"SELECT 1\0"),
        frame(b'Z', b"I"),
    ]
    .concat();
    assert_eq!(out, want);
    assert!(matches!(events[..], [Event::Ready(b'I')]));
    assert!(relay.is_idle());
}

#[test]
fn an_error_skips_to_sync_and_forgets_statements_never_created() {
    let mut relay = Relay::default();
    relay.expects.push_back(Expect::new(ExpectKind::Bind));
    let mut parse = Expect::new(ExpectKind::Parse);
    let stmt = Arc::new(Statement {
        id: 9,
        server_name: "pgr_9".into(),
        after_name: Bytes::from_static(b"SELECT 1\0\0\0"),
        class: Arc::new(crate::classify::classify("SELECT 1")),
        hints: Default::default(),
    });
    parse.forget_client = Some(("s2".into(), stmt));
    parse.forget_server = Some(9);
    relay.expects.push_back(parse);
    relay
        .expects
        .push_back(Expect::synthetic(Bytes::from(frame(b'3', b""))));
    relay.expects.push_back(Expect::new(ExpectKind::Sync));
    let (out, events) = run(&mut relay, &[frame(b'E', b"C26000\0\0"), frame(b'Z', b"I")]);
    assert_eq!(
        out,
        [frame(b'E', b"C26000\0\0"), frame(b'Z', b"I")].concat()
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Named(c, None) if c == "s2")));
    assert!(events.iter().any(|e| matches!(e, Event::Forget(9))));
    assert!(relay.is_idle());
}

#[test]
fn a_parse_skipped_after_a_skipped_close_of_its_name_leaves_the_closed_statement() {
    // Parse s0 (A, done), Execute (fails), Close s0, Parse s0 (C), Sync: the Close and the
    // second Parse are discarded, so s0 is still A.
    let stmt = |id: u64, sql: &'static str| {
        Arc::new(Statement {
            id,
            server_name: format!("pgr_{id}"),
            after_name: Bytes::from(format!("{sql}\0\0\0")),
            class: Arc::new(crate::classify::classify(sql)),
            hints: Default::default(),
        })
    };
    let (a, c) = (stmt(1, "SELECT 1"), stmt(2, "SELECT 2"));
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Execute);
    let mut close = Expect::synthetic(Bytes::from(frame(b'3', b"")));
    close.restore = Some(("s0".into(), a.clone()));
    relay.expects.push_back(close);
    let mut parse = Expect::new(ExpectKind::Parse);
    parse.forget_client = Some(("s0".into(), c));
    parse.forget_server = Some(2);
    relay.expects.push_back(parse);
    push(&mut relay, ExpectKind::Sync);
    let (_, events) = run(&mut relay, &[frame(b'E', b"C34000\0\0"), frame(b'Z', b"I")]);
    let named: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Named(n, s) => Some((n.as_str(), s.as_ref().map(|s| s.id))),
            _ => None,
        })
        .collect();
    assert_eq!(named, [("s0", Some(1)), ("s0", Some(1))]);
    assert!(events.iter().any(|e| matches!(e, Event::Forget(2))));
}

#[test]
fn messages_sent_while_the_server_discards_up_to_an_unsent_sync_are_skipped_at_once() {
    // Parse (fails), Flush; then Parse of the unnamed statement, Flush: the server discards it.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Parse);
    let (_, _) = run(&mut relay, &[frame(b'E', b"C42601\0\0")]);
    let mut parse = Expect::new(ExpectKind::Parse);
    parse.unnamed = Some(UnnamedChange {
        replaces: None,
        was_on_conn: false,
    });
    relay.expects.push_back(parse);
    let mut events = Vec::new();
    relay.skip_unsynced_discarded(&mut events);
    assert!(relay.is_idle(), "{:?}", relay.expects);
    assert!(matches!(events[..], [Event::Unnamed(None, false)]));
    // With its Sync sent, the server's ReadyForQuery is what ends the discarding.
    push(&mut relay, ExpectKind::Parse);
    push(&mut relay, ExpectKind::Sync);
    relay.skip_unsynced_discarded(&mut events);
    assert_eq!(relay.expects.len(), 2);
}

#[test]
fn a_retryable_reads_prelude_waits_for_its_first_result() {
    let mut relay = Relay::default();
    relay.expects.push_back(Expect::new(ExpectKind::Bind));
    relay.expects.push_back(Expect::new(ExpectKind::Execute));
    relay.expects.push_back(Expect::new(ExpectKind::Sync));
    relay.hold_prelude();
    // BindComplete and a notice: only the notice reaches the client, nothing counts as a
    // reply, so the read can still be retried.
    let mut buf = BytesMut::from(&[frame(b'2', b""), frame(b'N', b"x\0")].concat()[..]);
    let mut out = BytesMut::new();
    let replied = relay
        .process(
            Frames::new(&mut buf),
            &mut out,
            &mut Vec::new(),
            &mut Reported::default(),
        )
        .unwrap();
    assert!(!replied);
    assert_eq!(&out[..], &frame(b'N', b"x\0")[..]);
    // The first row releases the held BindComplete ahead of it.
    let mut buf = BytesMut::from(&[frame(b'D', b"\0\0"), frame(b'C', b"SELECT 1\0")].concat()[..]);
    out.clear();
    let replied = relay
        .process(
            Frames::new(&mut buf),
            &mut out,
            &mut Vec::new(),
            &mut Reported::default(),
        )
        .unwrap();
    assert!(replied);
    let want = [
        frame(b'2', b""),
        frame(b'D', b"\0\0"),
        frame(b'C', b"SELECT 1\0"),
    ]
    .concat();
    assert_eq!(&out[..], &want[..]);
}

#[test]
fn a_read_missing_only_its_ready_for_query_is_recognised() {
    let mut relay = Relay::default();
    let mut q = Expect::new(ExpectKind::Query);
    q.class = Some(Arc::new(crate::classify::classify("SELECT 1")));
    relay.expects.push_back(q);
    assert!(!relay.only_ready_missing());
    let mut buf = BytesMut::from(&[frame(b'T', b"\0\0"), frame(b'C', b"SELECT 1\0")].concat()[..]);
    relay
        .process(
            Frames::new(&mut buf),
            &mut BytesMut::new(),
            &mut Vec::new(),
            &mut Reported::default(),
        )
        .unwrap();
    assert!(relay.only_ready_missing());
    // Two statements, one result so far: the second is still to come.
    let mut relay = Relay::default();
    let mut q = Expect::new(ExpectKind::Query);
    q.class = Some(Arc::new(crate::classify::classify("SELECT 1; SELECT 2")));
    relay.expects.push_back(q);
    let mut buf = BytesMut::from(&frame(b'C', b"SELECT 1\0")[..]);
    relay
        .process(
            Frames::new(&mut buf),
            &mut BytesMut::new(),
            &mut Vec::new(),
            &mut Reported::default(),
        )
        .unwrap();
    assert!(!relay.only_ready_missing());
}

#[test]
fn captured_lsn_is_reported_and_hidden_from_the_client() {
    let mut relay = Relay::default();
    relay.expects.push_back(Expect::new(ExpectKind::Query));
    relay
        .expects
        .push_back(Expect::hidden(ExpectKind::CaptureLsn));
    let mut row = 1i16.to_be_bytes().to_vec();
    row.extend_from_slice(&9i32.to_be_bytes());
    row.extend_from_slice(b"0/16B3748");
    let server = [
        frame(b'C', b"INSERT 0 1\0"),
        frame(b'Z', b"I"),
        frame(b'T', b"\0\0"),
        frame(b'D', &row),
        frame(b'C', b"SELECT 1\0"),
        frame(b'Z', b"I"),
    ];
    let (out, events) = run(&mut relay, &server);
    assert_eq!(
        out,
        [frame(b'C', b"INSERT 0 1\0"), frame(b'Z', b"I")].concat()
    );
    assert!(matches!(
        events[..],
        [Event::Ready(b'I'), Event::Lsn(Lsn(0x16B3748))]
    ));
    assert!(relay.is_idle());
}

#[test]
fn notices_pass_anywhere_and_an_unexpected_ready_is_an_error() {
    let mut relay = Relay::default();
    relay.expects.push_back(Expect::new(ExpectKind::Bind));
    let mut buf = BytesMut::from(&[frame(b'N', b"x\0"), frame(b'Z', b"I")].concat()[..]);
    let mut out = BytesMut::new();
    assert!(relay
        .process(
            Frames::new(&mut buf),
            &mut out,
            &mut Vec::new(),
            &mut Reported::default()
        )
        .is_err());
    assert_eq!(&out[..], &frame(b'N', b"x\0")[..]);
}

fn push(relay: &mut Relay, kind: ExpectKind) {
    relay.expects.push_back(Expect::new(kind));
}

/// A Sync the client sent after COPY data, before it knew the server was in COPY IN.
fn push_sync_after_copy_data(relay: &mut Relay) {
    let mut sync = Expect::new(ExpectKind::Sync);
    sync.after_copy_data = true;
    relay.expects.push_back(sync);
}

#[test]
fn syncs_sent_into_a_simple_copy_get_no_ready_for_query() {
    // Query("COPY t FROM STDIN"), Sync, CopyData, CopyDone: the server ignores that Sync.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Query);
    push(&mut relay, ExpectKind::Sync);
    relay.expects.push_back(Expect::hidden(ExpectKind::CopyEnd));
    let server = [
        frame(b'G', b"\0\0\0"),
        frame(b'C', b"COPY 1\0"),
        frame(b'Z', b"I"),
    ];
    let (out, events) = run(&mut relay, &server);
    assert_eq!(out, server.concat());
    assert!(relay.is_idle(), "{:?}", relay.expects);
    // The client had ended the COPY before the server started it: the session is not in
    // COPY IN at any point (what the client sends next is not COPY input).
    assert!(
        matches!(events[..], [Event::CopyInEnded, Event::Ready(b'I')]),
        "{events:?}"
    );
}

#[test]
fn an_extended_copy_with_its_data_pipelined_keeps_the_sync_after_copy_done() {
    // Bind, Execute, CopyData, CopyDone, Sync in one write: that Sync is answered.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Bind);
    push(&mut relay, ExpectKind::Execute);
    relay.expects.push_back(Expect::hidden(ExpectKind::CopyEnd));
    push(&mut relay, ExpectKind::Sync);
    let server = [
        frame(b'2', b""),
        frame(b'G', b"\0\0\0"),
        frame(b'C', b"COPY 2\0"),
        frame(b'Z', b"I"),
    ];
    let (out, events) = run(&mut relay, &server);
    assert_eq!(out, server.concat());
    assert!(relay.is_idle());
    assert!(
        !events.iter().any(|e| matches!(e, Event::CopyIn { .. })),
        "the CopyDone went with the COPY: the session never is in COPY IN: {events:?}"
    );
}

#[test]
fn a_stray_second_copy_done_pipelined_with_the_copy_changes_nothing() {
    // Execute(COPY), CopyData, CopyDone, CopyDone, Sync (the server ignores the second
    // CopyDone), then the client's next batch, before the server's CopyInResponse arrives.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Execute);
    relay.expects.push_back(Expect::hidden(ExpectKind::CopyEnd));
    relay.expects.push_back(Expect::hidden(ExpectKind::CopyEnd));
    push(&mut relay, ExpectKind::Sync);
    push(&mut relay, ExpectKind::Bind);
    push(&mut relay, ExpectKind::Sync);
    let server = [
        frame(b'G', b"\0\0\0"),
        frame(b'C', b"COPY 4\0"),
        frame(b'Z', b"I"),
        frame(b'2', b""),
        frame(b'Z', b"I"),
    ];
    let (out, events) = run(&mut relay, &server);
    assert_eq!(out, server.concat());
    assert!(relay.is_idle(), "{:?}", relay.expects);
    assert!(
        !events.iter().any(|e| matches!(e, Event::CopyIn { .. })),
        "{events:?}"
    );
}

#[test]
fn the_sync_behind_an_extended_copy_is_ignored_and_the_next_one_answered() {
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Execute);
    push(&mut relay, ExpectKind::Sync);
    let (_, events) = run(&mut relay, &[frame(b'G', b"\0\0\0")]);
    assert!(matches!(events[..], [Event::CopyIn { extended: true }]));
    // The client ends the COPY and syncs.
    relay.expects.push_back(Expect::hidden(ExpectKind::CopyEnd));
    push(&mut relay, ExpectKind::Sync);
    let (out, _) = run(&mut relay, &[frame(b'C', b"COPY 1\0"), frame(b'Z', b"I")]);
    assert_eq!(out, [frame(b'C', b"COPY 1\0"), frame(b'Z', b"I")].concat());
    assert!(relay.is_idle());
}

#[test]
fn a_failed_copy_may_answer_syncs_sent_after_its_data() {
    // Query(COPY), then the client sent data, a Sync, CopyDone, and a Sync of its own: the
    // COPY fails on the data. Whether the first Sync is answered depends on when the server
    // read it; either way the replies reach the client and the relay ends idle.
    for answered in [true, false] {
        let mut relay = Relay::default();
        push(&mut relay, ExpectKind::Query);
        let (_, _) = run(&mut relay, &[frame(b'G', b"\0\0\0")]);
        relay.sync_during_copy(true);
        relay.expects.push_back(Expect::hidden(ExpectKind::CopyEnd));
        push(&mut relay, ExpectKind::Sync);
        push(&mut relay, ExpectKind::Query);
        let error = frame(b'E', b"SERROR\0VERROR\0C22P02\0\0");
        let mut server = vec![error, frame(b'Z', b"I")];
        if answered {
            server.push(frame(b'Z', b"I"));
        }
        server.extend([frame(b'Z', b"I"), frame(b'I', b""), frame(b'Z', b"I")]);
        let (out, events) = run(&mut relay, &server);
        assert_eq!(out, server.concat(), "answered: {answered}");
        assert!(events.iter().any(|e| matches!(e, Event::CopyInEnded)));
        assert!(relay.is_idle(), "answered: {answered}: {:?}", relay.expects);
    }
}

#[test]
fn a_sync_after_data_in_a_pipelined_extended_copy_is_answered_when_the_copy_fails() {
    // Bind, Execute (COPY), CopyData (bad), Sync, then a Query: after the error the server
    // discards up to that Sync and answers it.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Bind);
    push(&mut relay, ExpectKind::Execute);
    push_sync_after_copy_data(&mut relay);
    push(&mut relay, ExpectKind::Query);
    let server = [
        frame(b'2', b""),
        frame(b'G', b"\0\0\0"),
        frame(b'E', b"SERROR\0VERROR\0C22P02\0\0"),
        frame(b'Z', b"I"),
        frame(b'E', b"SERROR\0VERROR\0C42601\0\0"),
        frame(b'Z', b"I"),
    ];
    let (out, _) = run(&mut relay, &server);
    assert_eq!(out, server.concat());
    assert!(relay.is_idle(), "{:?}", relay.expects);
}

#[test]
fn syncs_after_the_next_statement_are_outside_the_copy() {
    // Execute (COPY), Sync, CopyData (bad), Sync, Parse, Bind, Execute, Sync, Sync: the COPY
    // fails on the data; only the Syncs before the Parse were sent during it.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Execute);
    push(&mut relay, ExpectKind::Sync);
    push_sync_after_copy_data(&mut relay);
    for kind in [ExpectKind::Parse, ExpectKind::Bind, ExpectKind::Execute] {
        push(&mut relay, kind);
    }
    push(&mut relay, ExpectKind::Sync);
    push(&mut relay, ExpectKind::Sync);
    let server = [
        frame(b'G', b"\0\0\0"),
        frame(b'E', b"SERROR\0VERROR\0C22P02\0\0"),
        frame(b'Z', b"I"),
        frame(b'1', b""),
        frame(b'2', b""),
        frame(b'C', b"SELECT 1\0"),
        frame(b'Z', b"I"),
        frame(b'Z', b"I"),
    ];
    let (out, _) = run(&mut relay, &server);
    assert_eq!(out, server.concat());
    assert!(relay.is_idle(), "{:?}", relay.expects);
}

#[test]
fn a_copy_fail_after_a_sync_discards_up_to_the_next_sync() {
    // Parse, Bind, Execute (COPY), CopyData, Sync, CopyFail, Parse, Sync, Sync: the first Sync
    // was read during the COPY (ignored); CopyFail fails it, so the Parse is discarded and the
    // first ReadyForQuery answers the Sync after it.
    let mut relay = Relay::default();
    for kind in [ExpectKind::Parse, ExpectKind::Bind, ExpectKind::Execute] {
        push(&mut relay, kind);
    }
    push_sync_after_copy_data(&mut relay);
    relay.expects.push_back(Expect::hidden(ExpectKind::CopyEnd));
    push(&mut relay, ExpectKind::Parse);
    push(&mut relay, ExpectKind::Sync);
    push(&mut relay, ExpectKind::Sync);
    let server = [
        frame(b'1', b""),
        frame(b'2', b""),
        frame(b'G', b"\0\0\0"),
        frame(b'E', b"SERROR\0VERROR\0C57014\0\0"),
        frame(b'Z', b"I"),
        frame(b'Z', b"I"),
    ];
    let (out, events) = run(&mut relay, &server);
    assert_eq!(out, server.concat());
    assert!(relay.is_idle(), "{:?}", relay.expects);
    let readies = events
        .iter()
        .filter(|e| matches!(e, Event::Ready(_)))
        .count();
    assert_eq!(readies, 2);
}

#[test]
fn a_reply_that_fits_only_after_the_next_sync_shows_the_optional_sync_was_ignored() {
    // Execute (COPY), CopyData, Sync, CopyFail, Parse, Sync, Bind, Sync: the Parse was
    // discarded, and BindComplete is the Bind's.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Execute);
    push_sync_after_copy_data(&mut relay);
    relay.expects.push_back(Expect::hidden(ExpectKind::CopyEnd));
    for kind in [
        ExpectKind::Parse,
        ExpectKind::Sync,
        ExpectKind::Bind,
        ExpectKind::Sync,
    ] {
        push(&mut relay, kind);
    }
    let server = [
        frame(b'G', b"\0\0\0"),
        frame(b'E', b"SERROR\0VERROR\0C57014\0\0"),
        frame(b'Z', b"I"),
        frame(b'2', b""),
        frame(b'Z', b"I"),
    ];
    let (out, _) = run(&mut relay, &server);
    assert_eq!(out, server.concat());
    assert!(relay.is_idle(), "{:?}", relay.expects);
}

#[test]
fn a_replaced_query_reply_stands_in_for_the_servers() {
    // pgroute's own statement sent during COPY as an empty query: the COPY had failed, the
    // server answers the empty query, and the client gets pgroute's reply instead.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Query);
    let (_, _) = run(&mut relay, &[frame(b'G', b"\0\0\0")]);
    let own = frame(b'C', b"SET\0");
    let mut replaced = Expect::new(ExpectKind::Query);
    replaced.replace = Some(Bytes::from(own.clone()));
    relay.expects.push_back(replaced);
    let error = frame(b'E', b"SERROR\0VERROR\0C22P02\0\0");
    let server = [
        error.clone(),
        frame(b'Z', b"I"),
        frame(b'I', b""),
        frame(b'Z', b"I"),
    ];
    let (out, _) = run(&mut relay, &server);
    let expected = [error, frame(b'Z', b"I"), own, frame(b'Z', b"I")].concat();
    assert_eq!(out, expected);
    assert!(relay.is_idle(), "{:?}", relay.expects);
}

#[test]
fn a_fatal_error_is_relayed_even_with_nothing_expected() {
    let mut relay = Relay::default();
    let fatal = frame(b'E', b"SFATAL\0VFATAL\0C25P03\0Mterminating\0\0");
    let (out, events) = run(&mut relay, std::slice::from_ref(&fatal));
    assert_eq!(out, fatal);
    assert!(matches!(events[..], [Event::Fatal]));
}

#[test]
fn a_fatal_error_before_a_retryable_reads_reply_allows_the_retry() {
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Query);
    relay.hold_prelude();
    let fatal = frame(b'E', b"SFATAL\0VFATAL\0C57P01\0\0");
    let mut buf = BytesMut::from(&fatal[..]);
    let mut out = BytesMut::new();
    let r = relay.process(
        Frames::new(&mut buf),
        &mut out,
        &mut Vec::new(),
        &mut Reported::default(),
    );
    assert!(matches!(r, Err(RelayError::FatalBeforeReply)));
    assert!(out.is_empty());
}

#[test]
fn a_notification_from_the_sessions_own_server_carries_the_clients_pid() {
    let mut relay = Relay::default();
    relay.set_pids(4242, 7);
    let mut own = 4242i32.to_be_bytes().to_vec();
    own.extend_from_slice(b"chan\0payload\0");
    let mut other = 99i32.to_be_bytes().to_vec();
    other.extend_from_slice(b"chan\0x\0");
    let (out, _) = run(&mut relay, &[frame(b'A', &own), frame(b'A', &other)]);
    let mut want_own = 7i32.to_be_bytes().to_vec();
    want_own.extend_from_slice(b"chan\0payload\0");
    assert_eq!(out, [frame(b'A', &want_own), frame(b'A', &other)].concat());
}

#[test]
fn an_error_discards_a_simple_query_sent_before_the_sync() {
    // Bind fails; a Query sent before the Sync is discarded by the server too.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Bind);
    push(&mut relay, ExpectKind::Execute);
    push(&mut relay, ExpectKind::Query);
    push(&mut relay, ExpectKind::Sync);
    let (out, _) = run(&mut relay, &[frame(b'E', b"C26000\0\0"), frame(b'Z', b"I")]);
    assert_eq!(
        out,
        [frame(b'E', b"C26000\0\0"), frame(b'Z', b"I")].concat()
    );
    assert!(relay.is_idle());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = ExpectKind> {
        prop_oneof![
            Just(ExpectKind::Parse),
            Just(ExpectKind::Bind),
            Just(ExpectKind::Describe),
            Just(ExpectKind::Execute),
            Just(ExpectKind::Close),
            Just(ExpectKind::Sync),
            Just(ExpectKind::Query),
            Just(ExpectKind::CaptureLsn),
        ]
    }

    proptest! {
        /// Whatever a server sends — well-formed frames in any order, or garbage — the relay
        /// answers Ok or Err and never panics or loops.
        #[test]
        fn any_server_bytes_are_handled(
            kinds in proptest::collection::vec((kind(), any::<bool>()), 0..6),
            frames in proptest::collection::vec(
                (prop::sample::select(b"123tTnDCIsEZNASGHWdc".to_vec()),
                 proptest::collection::vec(any::<u8>(), 0..12)),
                0..12),
            garbage in proptest::collection::vec(any::<u8>(), 0..40),
            hold in any::<bool>(),
        ) {
            let mut relay = Relay::default();
            for (k, visible) in kinds {
                let mut e = Expect::new(k);
                e.visible = visible;
                relay.expects.push_back(e);
            }
            if hold {
                relay.hold_prelude();
            }
            let mut bytes: Vec<u8> = frames.iter().flat_map(|(t, b)| frame(*t, b)).collect();
            bytes.extend_from_slice(&garbage);
            let mut buf = BytesMut::from(&bytes[..]);
            let mut out = BytesMut::new();
            let _ = relay.process(Frames::new(&mut buf), &mut out, &mut Vec::new(), &mut Reported::default());
        }
    }
}

#[test]
fn a_notice_follows_pgroutes_own_reply_whose_turn_came_before_it() {
    // Bind, Close of a statement that does not exist (pgroute answers CloseComplete), Execute
    // of BEGIN inside a transaction: the server's WARNING belongs to the Execute.
    let mut relay = Relay::default();
    push(&mut relay, ExpectKind::Bind);
    relay
        .expects
        .push_back(Expect::synthetic(messages::empty(b'3')));
    push(&mut relay, ExpectKind::Execute);
    let notice = frame(b'N', b"SWARNING\0C25001\0\0");
    let server = [frame(b'2', b""), notice.clone(), frame(b'C', b"BEGIN\0")];
    let (out, _) = run(&mut relay, &server);
    let expected = [
        frame(b'2', b""),
        messages::empty(b'3').to_vec(),
        notice,
        frame(b'C', b"BEGIN\0"),
    ];
    assert_eq!(out, expected.concat());
    assert!(relay.is_idle());
}
