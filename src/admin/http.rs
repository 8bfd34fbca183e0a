//! A minimal HTTP/1.1 server for three fixed GET endpoints. Each connection sends one request
//! and gets one response with `Connection: close`: scrapers and health checkers need nothing
//! more, and this keeps an HTTP stack (hyper, hyper-util, http-body-util) out of the proxy.
//! Requests are bounded in size and time, and connections in number.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Admin;

/// Longest request head read; a longer one gets 431.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 32;

/// Accepts admin connections until `shutdown` fires.
pub async fn serve(admin: Arc<Admin>, listener: TcpListener, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                let admin = admin.clone();
                tracker.spawn(async move {
                    if let Err(e) = handle(&admin, stream).await {
                        tracing::debug!(error = %e, "admin connection failed");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// A response: status line and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The whole body (sent with `Content-Length`).
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

async fn handle(admin: &Admin, mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut head)).await;
    let response = match read {
        Err(_) => Response::text(408, "request timeout\n"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(false)) => Response::text(431, "request head too large\n"),
        Ok(Ok(true)) => respond(admin, &head),
    };
    let head_only = head.starts_with(b"HEAD ");
    stream.write_all(&encode(&response, head_only)).await?;
    stream.shutdown().await
}

/// Reads until the blank line that ends the request head. False when it is over [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut buf = [0u8; 1024];
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(true);
        }
        if head.len() > MAX_HEAD {
            return Ok(false);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
}

/// The response to a request head.
pub fn respond(admin: &Admin, head: &[u8]) -> Response {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "bad request\n");
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Response::text(400, "bad request\n");
    }
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "only GET and HEAD\n");
    }
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => match admin.metrics_text() {
            Ok(body) => Response {
                status: 200,
                content_type: prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                body,
            },
            Err(_) => Response::text(500, "metrics could not be encoded\n"),
        },
        "/health" => Response::text(200, "ok\n"),
        "/ready" => match admin.not_ready() {
            None => Response::text(200, "ready\n"),
            Some(why) => Response::text(503, format!("not ready: {why}\n")),
        },
        _ => Response::text(404, "not found: try /metrics, /health or /ready\n"),
    }
}

fn encode(r: &Response, head_only: bool) -> Vec<u8> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if r.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(r.body.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Proxy;

    fn admin() -> Admin {
        let toml = "[[users]]\nname = \"app\"\npassword = \"x\"\n\
                    [[nodes]]\nname = \"pg1\"\naddr = \"127.0.0.1:1\"\nrole = \"primary\"\n";
        let config = crate::config::from_toml_str(toml).expect("config loads");
        Admin::new(Proxy::new(config))
    }

    #[tokio::test]
    async fn each_endpoint_answers_and_anything_else_is_refused() {
        let admin = admin();
        let status = |head: &str| respond(&admin, head.as_bytes()).status;
        assert_eq!(status("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
        assert_eq!(status("HEAD /health HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status("GET /metrics?x=1 HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("GET /other HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET /health SPDY/3\r\n\r\n"), 400);
        assert_eq!(status("\u{1b}garbage\r\n\r\n"), 400);
        // Not serving clients yet, and the primary never probed.
        let ready = respond(&admin, b"GET /ready HTTP/1.1\r\n\r\n");
        assert_eq!(ready.status, 503);
        assert_eq!(
            ready.body,
            "not ready: the client listener is not accepting\n"
        );
        admin.proxy.set_accepting(true);
        let ready = respond(&admin, b"GET /ready HTTP/1.1\r\n\r\n");
        assert_eq!(ready.body, "not ready: the primary is not reachable\n");
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text_with_every_scrape_time_series() {
        let admin = admin();
        let r = respond(&admin, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
        for line in [
            "# TYPE pgroute_client_connections gauge",
            "pgroute_client_connections{state=\"idle\"} 0",
            "pgroute_node_up{node=\"pg1\"} 0",
            "pgroute_node_role{node=\"pg1\",role=\"unknown\"} 1",
            "pgroute_server_connections{node=\"pg1\",state=\"active\"} 0",
            "# TYPE pgroute_unit_duration_seconds histogram",
            "pgroute_config_reloads_total{result=\"ok\"} 0",
        ] {
            assert!(r.body.contains(line), "{line} in:\n{}", r.body);
        }
        let encoded = encode(&r, false);
        let text = String::from_utf8_lossy(&encoded);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!("Content-Length: {}\r\n", r.body.len())));
        assert!(encode(&r, true).ends_with(b"\r\n\r\n"), "HEAD: no body");
    }
}
