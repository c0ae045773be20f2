//! The dataplane behind an async face: libnftables calls block, so they run on blocking
//! threads, one at a time.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ferrolb_dataplane::dataplane::Applied;
use ferrolb_dataplane::{Counters, Dataplane, Forwarding};

#[derive(Clone)]
pub struct Forwarder {
    dataplane: Arc<Mutex<Dataplane>>,
}

impl Forwarder {
    /// Loads libnftables; the kernel is not touched until the first apply.
    pub async fn open() -> Result<Forwarder, String> {
        let dataplane = tokio::task::spawn_blocking(Dataplane::open)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(Forwarder {
            dataplane: Arc::new(Mutex::new(dataplane)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Dataplane) -> Result<T, ferrolb_dataplane::DataplaneError> + Send + 'static,
    ) -> Result<T, String> {
        let dataplane = self.dataplane.clone();
        tokio::task::spawn_blocking(move || {
            let mut dp = dataplane.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut dp).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Forwards `wanted`, and keeps forwarding the addresses in `keep` (all of them with
    /// `None`) that are programmed now and no longer wanted.
    pub async fn apply(
        &self,
        wanted: Arc<Forwarding>,
        keep: Option<BTreeSet<IpAddr>>,
    ) -> Result<Applied, String> {
        self.with(move |dp| {
            dp.apply_keeping(&wanted, |ip| keep.as_ref().is_none_or(|k| k.contains(ip)))
        })
        .await
    }

    pub async fn counters(&self) -> Result<Counters, String> {
        self.with(|dp| dp.counters()).await
    }

    /// Stops forwarding `taken` (addresses other nodes now announce).
    pub async fn release(&self, taken: BTreeSet<IpAddr>) -> Result<(), String> {
        self.with(move |dp| dp.release(&taken)).await
    }
}
