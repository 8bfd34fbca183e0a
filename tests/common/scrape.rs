//! The `[admin]` HTTP endpoint from a test's side: one GET, and `/metrics` parsed with a
//! Prometheus text-format parser (`prometheus-parse`), as a scraper would read it.

use std::net::SocketAddr;

use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestProxy;

/// `GET path` on the proxy's admin endpoint: (status, headers, body).
pub async fn get(proxy: &TestProxy, path: &str) -> (u16, String, String) {
    let addr = proxy.admin.expect("the test config turns [admin] on");
    get_at(addr, path).await
}

pub async fn get_at(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to the admin endpoint {addr}: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line in {head:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// `/metrics`, parsed.
/// Scrapes until `check` holds (the monitor needs a probe or two), at most `within`.
pub async fn scrape_until(
    proxy: &TestProxy,
    what: &str,
    within: std::time::Duration,
    check: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let deadline = std::time::Instant::now() + within;
    loop {
        let m = scrape(proxy).await;
        if check(&m) {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: never seen in\n{:?}",
            m.0.samples
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn scrape(proxy: &TestProxy) -> Metrics {
    let (status, head, body) = get(proxy, "/metrics").await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "Prometheus text format: {head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    Metrics(Scrape::parse(lines).expect("/metrics parses as the Prometheus text format"))
}

/// One scrape.
pub struct Metrics(pub Scrape);

impl Metrics {
    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
                Value::Summary(_) => f64::NAN,
            })
    }

    /// [`Metrics::get`], 0 when the series does not exist (yet).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Units routed to `node` for `reason` (not by a rule).
    pub fn routed(&self, node: &str, reason: &str) -> f64 {
        self.value(
            "pgroute_units_routed_total",
            &[("node", node), ("reason", reason)],
        )
    }

    /// Whether a metric of that name is in the scrape at all.
    pub fn has(&self, name: &str) -> bool {
        self.0.samples.iter().any(|s| s.metric == name)
    }
}
