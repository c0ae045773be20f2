//! The `/metrics`, `/healthz` and `/readyz` endpoints both processes serve.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};

/// A registry in Prometheus' text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Serves `/metrics` from `registry`, `/healthz`, and `/readyz` (200 while `ready`; the
/// body of a 503 is `not_ready`).
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    ready: Arc<AtomicBool>,
    not_ready: &'static str,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let registry = registry.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                let ready = ready.clone();
                async move {
                    let (code, body) = match req.uri().path() {
                        "/metrics" => (200, render(&registry)),
                        "/healthz" | "/livez" => (200, "ok".to_string()),
                        "/readyz" if ready.load(Ordering::Relaxed) => (200, "ok".to_string()),
                        "/readyz" => (503, not_ready.to_string()),
                        _ => (404, "not found".to_string()),
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(code)
                            .body(Full::new(Bytes::from(body)))
                            .expect("static response"),
                    )
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
