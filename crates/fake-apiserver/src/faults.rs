//! Fault injection: errors, throttling and latency on a share of requests.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What to do to API requests (discovery and the `/fake/` knobs are spared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Share of requests answered with 500 (0.0–1.0).
    pub error_rate: f64,
    /// Share of requests answered with 429 and `Retry-After: 1`.
    pub throttle_rate: f64,
    /// Added to every request.
    pub delay_ms: u64,
}

impl Faults {
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

/// What to answer a request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDecision {
    Serve,
    Error,
    Throttle,
}

/// A small xorshift generator: reproducible, no dependency.
#[derive(Debug, Clone)]
pub struct FaultRng(u64);

impl FaultRng {
    pub fn new(seed: u64) -> Self {
        FaultRng(seed.max(1))
    }

    fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn decide(&mut self, faults: &Faults) -> FaultDecision {
        let r = self.next_unit();
        if r < faults.error_rate {
            FaultDecision::Error
        } else if r < faults.error_rate + faults.throttle_rate {
            FaultDecision::Throttle
        } else {
            FaultDecision::Serve
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rate_is_respected_over_many_requests() {
        let mut rng = FaultRng::new(42);
        let faults = Faults {
            error_rate: 0.1,
            throttle_rate: 0.05,
            delay_ms: 0,
        };
        let mut errors = 0;
        let mut throttles = 0;
        for _ in 0..100_000 {
            match rng.decide(&faults) {
                FaultDecision::Error => errors += 1,
                FaultDecision::Throttle => throttles += 1,
                FaultDecision::Serve => {}
            }
        }
        assert!((9_000..11_000).contains(&errors), "{errors}");
        assert!((4_000..6_000).contains(&throttles), "{throttles}");
    }
}
