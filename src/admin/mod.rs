//! Operating pgroute: the metrics sessions count ([`metrics`]), those read at scrape time
//! ([`scrape`]) and the HTTP endpoint that serves them with the health checks ([`http`]).
//!
//! `[admin] listen` turns the endpoint on: `GET /metrics` (Prometheus text format, encoded by
//! `prometheus-client`), `GET /health` (200 while the process runs) and `GET /ready` (200 when
//! a primary is known and reachable and the client listener accepts; 503 otherwise).

pub mod http;
pub mod metrics;
pub mod scrape;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backend::view::Primary;
use crate::config::Config;
use crate::proxy::Proxy;

pub use metrics::Metrics;

/// Binds `[admin] listen`; `None` when the endpoint is off.
pub async fn bind(config: &Config) -> std::io::Result<Option<TcpListener>> {
    match &config.admin.listen {
        Some(addr) => TcpListener::bind(addr).await.map(Some),
        None => Ok(None),
    }
}

/// Serves the admin HTTP endpoint on `listener` until `shutdown` fires.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin endpoint listening (/metrics, /health, /ready)");
    }
    http::serve(Arc::new(Admin::new(proxy)), listener, shutdown).await;
}

/// What the HTTP endpoint answers from.
pub struct Admin {
    proxy: Arc<Proxy>,
    registry: Registry,
}

impl Admin {
    /// The registry of `proxy`'s metrics (prefix `pgroute`) and its scrape-time collector.
    pub fn new(proxy: Arc<Proxy>) -> Admin {
        let mut registry = Registry::with_prefix("pgroute");
        proxy.metrics.register(&mut registry);
        registry.register_collector(Box::new(scrape::ProxyCollector(proxy.clone())));
        Admin { proxy, registry }
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Why pgroute should not get new clients now, if it should not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if !self.proxy.accepting() {
            return Some("the client listener is not accepting");
        }
        let view = self.proxy.cluster.view();
        match view.primary {
            Primary::Known(n) if view.nodes.get(n).is_some_and(|v| v.reachable) => None,
            Primary::Known(_) => Some("the primary is not reachable"),
            Primary::Missing => Some("no primary is known"),
            Primary::Conflict(_) => Some("several nodes claim to be primary"),
        }
    }
}
