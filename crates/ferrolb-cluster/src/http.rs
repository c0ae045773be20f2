//! The `/metrics`, `/healthz` and `/readyz` endpoints both processes serve.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

/// Whether the process is ready, and if not, why.
#[derive(Debug)]
pub struct Readiness {
    ready: AtomicBool,
    reason: Mutex<String>,
}

impl Readiness {
    /// Not ready yet, for `reason`.
    pub fn new(reason: &str) -> Arc<Readiness> {
        Arc::new(Readiness {
            ready: AtomicBool::new(false),
            reason: Mutex::new(reason.to_string()),
        })
    }

    pub fn set(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.ready.store(true, Ordering::Relaxed),
            Err(reason) => {
                *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
                self.ready.store(false, Ordering::Relaxed);
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Why the process is not ready; `None` when it is.
    pub fn not_ready(&self) -> Option<String> {
        (!self.is_ready()).then(|| {
            self.reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }
}

/// Listens on `addr`, given by `flag`: an error names both (two processes on one host, say).
pub async fn listen(addr: SocketAddr, flag: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({flag}): {e}"))
    })
}

/// Serves `/metrics` from `registry`, `/healthz`, and `/readyz` (200 while ready; a 503's body
/// says why not).
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    readiness: Arc<Readiness>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let registry = registry.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                let readiness = readiness.clone();
                async move {
                    let (code, body) = match req.uri().path() {
                        "/metrics" => (200, render(&registry)),
                        "/healthz" | "/livez" => (200, "ok".to_string()),
                        "/readyz" => match readiness.not_ready() {
                            None => (200, "ok".to_string()),
                            Some(reason) => (503, reason),
                        },
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
