//! Per-endpoint rate limiting (GCRA via the `governor` crate). An endpoint is
//! scheme + host + port + path. Each process holds its own limiters; see the
//! README for how limits compose across processes. Waiting for the limiter
//! is never an attempt.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Forget limiters idle this long (a full bucket is the same as a new one).
const IDLE_EVICT: Duration = Duration::from_secs(600);
const EVICT_CHECK_EVERY: usize = 4096;

struct Entry {
    per_sec: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
    last_used: Instant,
}

pub struct EndpointLimiter {
    default_per_sec: u32,
    burst: u32,
    entries: Mutex<HashMap<String, Entry>>,
    clock: DefaultClock,
}

impl EndpointLimiter {
    pub fn new(default_per_sec: u32, burst: u32) -> Self {
        EndpointLimiter {
            default_per_sec: default_per_sec.max(1),
            burst: burst.max(1),
            entries: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one cell for `endpoint`, or says how long until one is free.
    /// `per_sec` overrides the default (a merchant's `rate_limit_per_sec`).
    pub fn check(&self, endpoint: &str, per_sec: Option<u32>) -> Result<(), Duration> {
        let per_sec = per_sec.filter(|r| *r > 0).unwrap_or(self.default_per_sec);
        let limiter = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if map.len() >= EVICT_CHECK_EVERY && map.len() % EVICT_CHECK_EVERY == 0 {
                map.retain(|_, e| now.duration_since(e.last_used) < IDLE_EVICT);
            }
            let entry = map
                .entry(endpoint.to_string())
                .or_insert_with(|| self.make(per_sec, now));
            if entry.per_sec != per_sec {
                *entry = self.make(per_sec, now);
            }
            entry.last_used = now;
            entry.limiter.clone()
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    fn make(&self, per_sec: u32, now: Instant) -> Entry {
        let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Entry {
            per_sec,
            limiter: Arc::new(RateLimiter::direct(
                Quota::per_second(rate).allow_burst(burst),
            )),
            last_used: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_wait_per_endpoint() {
        let l = EndpointLimiter::new(10, 3);
        for _ in 0..3 {
            assert!(l.check("https://a:443/", None).is_ok());
        }
        let wait = l.check("https://a:443/", None).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another endpoint has its own bucket.
        assert!(l.check("https://b:443/", None).is_ok());
    }
}
