//! Incoming BGP connections, handed to the peer they come from.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::{PeerConfig, PeerHandle};

/// Accepts BGP connections and hands each to the peer it comes from; connections from unknown
/// addresses are closed at once.
pub struct Listener {
    listener: tokio::net::TcpListener,
    peers: std::sync::Mutex<std::collections::HashMap<IpAddr, PeerHandle>>,
}

impl Listener {
    pub async fn bind(address: SocketAddr) -> io::Result<Arc<Listener>> {
        Ok(Arc::new(Listener {
            listener: tokio::net::TcpListener::bind(address).await?,
            peers: std::sync::Mutex::default(),
        }))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Routes connections from `peer`'s address to it; sets its MD5 key on the listening socket.
    pub fn add_peer(&self, config: &PeerConfig, handle: PeerHandle) -> io::Result<()> {
        if let Some(key) = &config.md5_key {
            crate::sys::set_md5(&self.listener, config.address.ip(), key.as_bytes())?;
        }
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(config.address.ip(), handle);
        Ok(())
    }

    pub fn remove_peer(&self, address: IpAddr) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address);
    }

    /// Accepts until the listener fails.
    pub async fn run(self: Arc<Self>) {
        loop {
            let Ok((stream, from)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Mapped IPv4 addresses arrive on dual-stack sockets.
            let ip = match from.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            let handle = self
                .peers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&ip)
                .cloned();
            match handle {
                Some(h) => h.incoming(stream),
                None => drop(stream),
            }
        }
    }
}
