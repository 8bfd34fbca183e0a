//! Accepting clients: the listener, the connection limit, and draining on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::Error;
use crate::proxy::Proxy;
use crate::session;
use crate::session::client::Client;

/// Binds the configured listen address.
pub async fn bind(config: &Config) -> std::io::Result<TcpListener> {
    TcpListener::bind(&config.listen).await
}

/// Accepts clients until `shutdown` fires, then waits for the sessions to finish.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let monitor = crate::monitor::spawn(
        proxy.cluster.clone(),
        proxy.pools.clone(),
        crate::monitor::Settings::from_config(&proxy.config()),
        proxy.lag_limits(),
        shutdown.clone(),
    );
    let limit = Arc::new(Semaphore::new(proxy.config().max_client_conn));
    let next_id = AtomicU64::new(1);
    let mut backoff = Duration::from_millis(5);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "pgroute listening");
    }
    proxy.set_accepting(true);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, addr) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE and friends: wait instead of spinning.
                tracing::warn!(error = %e, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracker.spawn(refuse(proxy.clone(), stream, addr));
            continue;
        };
        let proxy = proxy.clone();
        tracker.spawn(async move {
            let _counted = proxy.metrics.client_connected();
            tracing::debug!(conn_id, client.addr = %addr, "client connected");
            session::serve(proxy, stream, conn_id).await;
            drop(permit);
        });
    }
    proxy.set_accepting(false);
    tracker.close();
    tracker.wait().await;
    let _ = monitor.await;
}

/// "sorry, too many clients already" with PostgreSQL's SQLSTATE 53300.
///
/// Like PostgreSQL, the refusal answers the client's StartupMessage: an SSLRequest first gets
/// its 'N' (libpq ignores an error sent in reply to SSLRequest). A client that sends nothing
/// useful within a few seconds is just disconnected; a CancelRequest is still forwarded.
async fn refuse(proxy: Arc<Proxy>, stream: TcpStream, addr: SocketAddr) {
    use crate::session::startup::{read_hello, Hello};
    let mut client = Client::new(stream);
    let hello = tokio::time::timeout(Duration::from_secs(5), read_hello(&mut client)).await;
    match hello {
        Ok(Ok(Hello::Startup { .. })) => {}
        // A cancel is not a session: it must get through even when every slot is taken.
        Ok(Ok(Hello::Cancel { pid, secret })) => return proxy.cancels.cancel(pid, secret).await,
        _ => return,
    }
    tracing::warn!(client.addr = %addr, "connection limit reached, refusing client");
    proxy.metrics.error_sent(&Error::TooManyClients);
    Error::TooManyClients.write_response(client.out());
    let _ = client.shutdown().await;
}
