//! Pinning: temporary tables, session advisory locks, LISTEN, WITH HOLD cursors and session pool
//! mode keep a session on its server connection.

use futures::StreamExt;
use tokio_postgres::{AsyncMessage, Notification};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_table_pins_the_session_to_its_primary_backend() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .simple_query("CREATE TEMP TABLE proto_tmp(x int); INSERT INTO proto_tmp VALUES (1)")
        .await
        .expect("temp table");
    let mut backends = BTreeSet::new();
    for i in 0..20 {
        let (x, port, pid) = if i % 2 == 0 {
            let rows = simple_rows(
                &client,
                "SELECT x, inet_server_port(), pg_backend_pid() FROM proto_tmp",
            )
            .await;
            let r = &rows[0];
            let p = |j: usize| r[j].as_deref().unwrap().parse::<i32>().unwrap();
            (p(0), p(1), p(2))
        } else {
            let r = client
                .query_one(
                    "SELECT x, inet_server_port(), pg_backend_pid() FROM proto_tmp",
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("read {i}: {e}"));
            (r.get(0), r.get(1), r.get(2))
        };
        assert_eq!(x, 1);
        assert_eq!(port, primary_port(), "read {i}");
        backends.insert(pid);
    }
    assert_eq!(backends.len(), 1, "{backends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_advisory_lock_is_held_until_unlock_or_disconnect() {
    let proxy = start("");
    let holder = proxy.connect().await;
    let other = proxy.connect().await;
    let try_lock = "SELECT pg_try_advisory_lock(424242)";
    let unlock = "SELECT pg_advisory_unlock(424242)";
    simple_rows(&holder, "SELECT pg_advisory_lock(424242)").await;
    for i in 0..10 {
        // The holder keeps reading and writing meanwhile; its lock must stay.
        holder
            .query_one("SELECT 1", &[])
            .await
            .expect("holder read");
        let got: bool = other.query_one(try_lock, &[]).await.expect("try").get(0);
        assert!(!got, "lock taken by another session, attempt {i}");
    }
    let released: bool = holder.query_one(unlock, &[]).await.expect("unlock").get(0);
    assert!(released, "the holder's session holds the lock");
    let got: bool = other.query_one(try_lock, &[]).await.expect("try").get(0);
    assert!(got, "free after unlock");
    let released: bool = other.query_one(unlock, &[]).await.expect("unlock").get(0);
    assert!(released);

    // Held again, then the holder disconnects: PostgreSQL releases it with the backend.
    simple_rows(&holder, "SELECT pg_advisory_lock(424242)").await;
    let got: bool = other.query_one(try_lock, &[]).await.expect("try").get(0);
    assert!(!got, "held again");
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got: bool = other.query_one(try_lock, &[]).await.expect("try").get(0);
        if got {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock outlived its session's disconnect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other
        .simple_query("SELECT pg_advisory_unlock_all()")
        .await
        .expect("unlock all");
}

/// A client whose connection is driven here, so that notifications can be received.
async fn connect_listener(
    proxy: &TestProxy,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<Notification>) {
    let (client, mut conn) = config_for(proxy).connect(NoTls).await.expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = messages.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send(n);
            }
        }
    });
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_receives_notifications_from_other_sessions() {
    let proxy = start("");
    let (listener, mut notifications) = connect_listener(&proxy).await;
    listener
        .simple_query("LISTEN proto_chan")
        .await
        .expect("LISTEN");
    let notifier = proxy.connect().await;
    for i in 0..5 {
        // Reads by the listener in between must not take it off its LISTENing backend.
        listener.query_one("SELECT 1", &[]).await.expect("read");
        notifier
            .simple_query(&format!("NOTIFY proto_chan, 'hi {i}'"))
            .await
            .expect("NOTIFY");
        let n = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
            .await
            .unwrap_or_else(|_| panic!("notification {i} within 5 s"))
            .expect("listener connection open");
        assert_eq!(
            (n.channel(), n.payload()),
            ("proto_chan", format!("hi {i}").as_str())
        );
    }
    // Also through pg_notify() from the extended protocol.
    notifier
        .query("SELECT pg_notify('proto_chan', 'via function')", &[])
        .await
        .expect("pg_notify");
    let n = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("pg_notify notification within 5 s")
        .expect("open");
    assert_eq!(n.payload(), "via function");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_with_hold_is_fetched_across_statements() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .simple_query("DECLARE proto_c CURSOR WITH HOLD FOR SELECT generate_series(1, 10)")
        .await
        .expect("DECLARE");
    client
        .query_one("SELECT 1", &[])
        .await
        .expect("a read in between");
    let first = simple_rows(&client, "FETCH 5 FROM proto_c").await;
    let want = |r: std::ops::RangeInclusive<i32>| -> Vec<Vec<Option<String>>> {
        r.map(|i| vec![Some(i.to_string())]).collect()
    };
    assert_eq!(first, want(1..=5));
    client
        .query_one("SELECT 2", &[])
        .await
        .expect("a read in between");
    let second: Vec<i32> = client
        .query("FETCH 5 FROM proto_c", &[])
        .await
        .expect("FETCH")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(second, (6..=10).collect::<Vec<_>>());
    assert!(simple_rows(&client, "FETCH 5 FROM proto_c")
        .await
        .is_empty());
    client.simple_query("CLOSE proto_c").await.expect("CLOSE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pool_mode_keeps_one_backend_per_session() {
    let proxy = start("[pool]\nmode = \"session\"\n");
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let mut seen_a = BTreeSet::new();
    let mut seen_b = BTreeSet::new();
    for i in 0..20 {
        let sql = "SELECT inet_server_port(), pg_backend_pid()";
        let ra = a.query_one(sql, &[]).await.expect("a");
        seen_a.insert((ra.get::<_, i32>(0), ra.get::<_, i32>(1)));
        let rb = simple_rows(&b, sql).await;
        seen_b.insert((
            rb[0][0].as_deref().unwrap().parse::<i32>().unwrap(),
            rb[0][1].as_deref().unwrap().parse::<i32>().unwrap(),
        ));
        if i == 10 {
            a.simple_query("BEGIN; SELECT 1; COMMIT")
                .await
                .expect("transaction");
        }
    }
    assert_eq!(seen_a.len(), 1, "{seen_a:?}");
    assert_eq!(seen_b.len(), 1, "{seen_b:?}");
    assert_ne!(seen_a, seen_b, "two sessions, two backends");
    assert_eq!(seen_a.iter().next().unwrap().0, primary_port());
}
