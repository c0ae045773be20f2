//! The NodePort listener each lab node runs: answers every HTTP request with the node's name
//! and the client address it sees, on every port of the NodePort range.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub async fn serve(name: String, addresses: Vec<IpAddr>, ports: Vec<u16>) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for a in &addresses {
        for p in &ports {
            let listener = bind(SocketAddr::new(*a, *p))?;
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, peer)) = listener.accept().await else {
                        continue;
                    };
                    let name = name.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let body = format!("{name} {peer}\n");
                            async move {
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// A listening socket that may bind an address the host does not hold yet (IP_FREEBIND):
/// an address VRRP moves between nodes is served wherever it lands.
fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_freebind_v4(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(tokio::net::TcpListener::from_std(socket.into())?)
}

/// `30080-30089` or `30080`.
pub fn parse_ports(s: &str) -> anyhow::Result<Vec<u16>> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a <= b, "{s}: empty range");
    Ok((a..=b).collect())
}
