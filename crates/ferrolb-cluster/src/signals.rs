//! How a component learns it must stop: SIGTERM (what the kubelet sends) or SIGINT (a terminal).

/// Resolves on the first SIGTERM or SIGINT. Without a SIGTERM handler a process dies at once
/// on the kubelet's signal, before it can hand over (the controller's Lease, the speaker's
/// addresses).
pub async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}
