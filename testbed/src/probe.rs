//! A client that asks every few milliseconds, each time on a new connection, and logs which
//! node answered: what failover and failback gaps are read from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client;

/// One probe: when it ended, which target, the node that answered.
#[derive(Debug, Clone)]
pub struct Probe {
    pub at: Instant,
    pub target: usize,
    pub node: Option<String>,
}

/// Probes running on a thread inside a client's namespace; stopped when dropped.
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Probe>>>,
}

impl Prober {
    /// Asks each of `targets` every `every` (connect timeout 10 ms, read 50 ms), from `ns`,
    /// for at most `limit`.
    pub fn start(ns: &str, targets: Vec<SocketAddr>, every: Duration, limit: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = ns.to_string();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut log = Vec::new();
            if crate::netns::enter(&ns).is_err() {
                return log;
            }
            let deadline = Instant::now() + limit;
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                let tick = Instant::now();
                for (target, addr) in targets.iter().enumerate() {
                    let node = ask(*addr);
                    log.push(Probe {
                        at: Instant::now(),
                        target,
                        node,
                    });
                }
                std::thread::sleep(every.saturating_sub(tick.elapsed()));
            }
            log
        });
        Prober {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns the log.
    pub fn finish(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP GET on a new connection (connect timeout 10 ms, read 50 ms): the answering node's
/// name (the listener's first word).
pub fn ask(addr: SocketAddr) -> Option<String> {
    ask_within(addr, Duration::from_millis(10), Duration::from_millis(50))
}

/// [`ask`] with its timeouts given.
pub fn ask_within(addr: SocketAddr, connect: Duration, read: Duration) -> Option<String> {
    let (_, body) = client::http_get_within(addr, "/", connect, read)?;
    body.split_whitespace().next().map(str::to_string)
}

/// The node that answers `addr` from namespace `ns` (200 ms per timeout), if any.
pub fn answered_from(ns: &str, addr: SocketAddr) -> Option<String> {
    let wait = Duration::from_millis(200);
    crate::netns::in_ns(ns, move || ask_within(addr, wait, wait))
        .ok()
        .flatten()
}

/// The longest time between `from` and `until` in which no probe of `target` was answered:
/// from `from` to the first answer, between answers, from the last answer to `until`.
pub fn longest_silence(log: &[Probe], target: usize, from: Instant, until: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for p in log
        .iter()
        .filter(|p| p.target == target && p.at >= from && p.at <= until && p.node.is_some())
    {
        longest = longest.max(p.at - last);
        last = p.at;
    }
    longest.max(until.saturating_duration_since(last))
}

/// From `from`, the time until the first answer by a node other than `old`.
pub fn moved_after(log: &[Probe], target: usize, from: Instant, old: &str) -> Option<Duration> {
    log.iter()
        .find(|p| p.target == target && p.at >= from && p.node.as_deref().is_some_and(|n| n != old))
        .map(|p| p.at - from)
}

/// Probes of `target` not answered from `from` until the first answer by a node other than
/// `old`.
pub fn lost_until_moved(log: &[Probe], target: usize, from: Instant, old: &str) -> usize {
    log.iter()
        .filter(|p| p.target == target && p.at >= from)
        .take_while(|p| p.node.as_deref().is_none_or(|n| n == old))
        .filter(|p| p.node.is_none())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_count_the_edges_and_the_gaps_between_answers() {
        let t0 = Instant::now();
        let at = |ms: u64, node: Option<&str>| Probe {
            at: t0 + Duration::from_millis(ms),
            target: 0,
            node: node.map(str::to_string),
        };
        let log = vec![
            at(10, None),
            at(20, Some("n3")),
            at(30, None),
            at(300, Some("n1")),
            at(310, Some("n1")),
        ];
        let ms = Duration::from_millis;
        assert_eq!(longest_silence(&log, 0, t0, t0 + ms(320)), ms(280));
        assert_eq!(longest_silence(&log, 0, t0, t0 + ms(1000)), ms(690));
        assert_eq!(longest_silence(&log, 1, t0, t0 + ms(50)), ms(50));
        assert_eq!(moved_after(&log, 0, t0, "n3"), Some(ms(300)));
        assert_eq!(lost_until_moved(&log, 0, t0, "n3"), 2);
    }
}
