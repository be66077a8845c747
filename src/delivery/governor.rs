//! Per-endpoint admission: the in-flight cap, the circuit breaker and the
//! rate limit (GCRA via the `governor` crate). An endpoint is scheme + host +
//! port + path. State is per process; see the README for how limits compose
//! across processes. Being held back here is never an attempt: the sender
//! waits a moment in place or hands the job back to the queue.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Forget idle endpoints after this long (their state is back to fresh).
const IDLE_EVICT: Duration = Duration::from_secs(600);
const EVICT_CHECK_EVERY: usize = 4096;
/// How long a job held by the in-flight cap waits before it tries again.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct GovernorSettings {
    pub rate_per_sec: u32,
    pub burst: u32,
    pub max_in_flight: u32,
    pub failure_threshold: u32,
    pub cooldown: Duration,
}

/// Why a request may not go now, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    CircuitOpen(Duration),
    InFlight(Duration),
    RateLimited(Duration),
}

impl Held {
    pub fn wait(&self) -> Duration {
        match *self {
            Held::CircuitOpen(d) | Held::InFlight(d) | Held::RateLimited(d) => d,
        }
    }
}

/// Permission to send one request; dropping it frees the in-flight slot.
#[derive(Debug)]
pub struct Pass {
    _slot: OwnedSemaphorePermit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

struct Endpoint {
    per_sec: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
    slots: Arc<Semaphore>,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    last_used: Instant,
}

pub struct EndpointGovernor {
    settings: GovernorSettings,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    clock: DefaultClock,
}

impl EndpointGovernor {
    pub fn new(settings: GovernorSettings) -> Self {
        EndpointGovernor {
            settings,
            endpoints: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Admits one request to `endpoint` or says why not and for how long.
    /// `per_sec` overrides the default rate (a merchant's `rate_limit_per_sec`).
    pub fn admit(&self, endpoint: &str, per_sec: Option<u32>) -> Result<Pass, Held> {
        let per_sec = per_sec
            .filter(|r| *r > 0)
            .unwrap_or(self.settings.rate_per_sec)
            .max(1);
        let now = Instant::now();
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= EVICT_CHECK_EVERY && map.len() % EVICT_CHECK_EVERY == 0 {
            map.retain(|_, e| {
                now.duration_since(e.last_used) < IDLE_EVICT || e.open_until.is_some()
            });
        }
        let e = map
            .entry(endpoint.to_string())
            .or_insert_with(|| self.fresh(per_sec, now));
        e.last_used = now;
        if e.per_sec != per_sec {
            e.per_sec = per_sec;
            e.limiter = Arc::new(limiter(per_sec, self.settings.burst));
        }
        // Circuit: open → hold until the cooldown ends; then one probe.
        if let Some(until) = e.open_until {
            if now < until {
                return Err(Held::CircuitOpen(until - now));
            }
            if e.probing {
                return Err(Held::CircuitOpen(
                    self.settings.cooldown.min(Duration::from_secs(5)),
                ));
            }
        }
        let slot = e
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Held::InFlight(IN_FLIGHT_RETRY))?;
        if let Err(not_until) = e.limiter.check() {
            return Err(Held::RateLimited(
                not_until.wait_time_from(self.clock.now()),
            ));
        }
        if e.open_until.is_some() {
            e.probing = true;
        }
        Ok(Pass { _slot: slot })
    }

    /// Records the outcome of an admitted request.
    pub fn record(&self, endpoint: &str, success: bool) {
        let now = Instant::now();
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = map.get_mut(endpoint) else {
            return;
        };
        if success {
            e.consecutive_failures = 0;
            e.open_until = None;
            e.probing = false;
            return;
        }
        e.consecutive_failures = e.consecutive_failures.saturating_add(1);
        if e.probing || e.consecutive_failures >= self.settings.failure_threshold {
            if e.open_until.is_none() || e.probing {
                tracing::warn!(
                    endpoint,
                    failures = e.consecutive_failures,
                    "circuit opened"
                );
            }
            e.open_until = Some(now + self.settings.cooldown);
            e.probing = false;
        }
    }

    pub fn circuit(&self, endpoint: &str) -> CircuitState {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(endpoint).and_then(|e| e.open_until) {
            None => CircuitState::Closed,
            Some(until) if Instant::now() < until => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    fn fresh(&self, per_sec: u32, now: Instant) -> Endpoint {
        Endpoint {
            per_sec,
            limiter: Arc::new(limiter(per_sec, self.settings.burst)),
            slots: Arc::new(Semaphore::new(self.settings.max_in_flight.max(1) as usize)),
            consecutive_failures: 0,
            open_until: None,
            probing: false,
            last_used: now,
        }
    }
}

fn limiter(per_sec: u32, burst: u32) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GovernorSettings {
        GovernorSettings {
            rate_per_sec: 10,
            burst: 3,
            max_in_flight: 2,
            failure_threshold: 3,
            cooldown: Duration::from_millis(200),
        }
    }

    #[test]
    fn rate_limit_burst_then_wait_per_endpoint() {
        let g = EndpointGovernor::new(GovernorSettings {
            max_in_flight: 100,
            ..settings()
        });
        let passes: Vec<Pass> = (0..3)
            .map(|_| g.admit("https://a:443/", None).unwrap())
            .collect();
        match g.admit("https://a:443/", None) {
            Err(Held::RateLimited(w)) => assert!(
                w > Duration::ZERO && w <= Duration::from_millis(100),
                "{w:?}"
            ),
            other => panic!("expected a rate-limit hold, got {other:?}"),
        }
        assert!(
            g.admit("https://b:443/", None).is_ok(),
            "another endpoint has its own bucket"
        );
        drop(passes);
    }

    #[test]
    fn in_flight_cap_holds_until_a_pass_is_dropped() {
        let g = EndpointGovernor::new(GovernorSettings {
            rate_per_sec: 1000,
            burst: 1000,
            ..settings()
        });
        let a = g.admit("e", None).unwrap();
        let _b = g.admit("e", None).unwrap();
        assert!(matches!(g.admit("e", None), Err(Held::InFlight(_))));
        drop(a);
        assert!(g.admit("e", None).is_ok());
    }

    #[test]
    fn circuit_opens_after_threshold_then_one_probe_decides() {
        let g = EndpointGovernor::new(GovernorSettings {
            rate_per_sec: 1000,
            burst: 1000,
            max_in_flight: 10,
            ..settings()
        });
        for _ in 0..3 {
            drop(g.admit("e", None).unwrap());
            g.record("e", false);
        }
        assert_eq!(g.circuit("e"), CircuitState::Open);
        assert!(matches!(g.admit("e", None), Err(Held::CircuitOpen(_))));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(g.circuit("e"), CircuitState::HalfOpen);
        let probe = g.admit("e", None).expect("one probe after the cooldown");
        assert!(
            matches!(g.admit("e", None), Err(Held::CircuitOpen(_))),
            "only one probe at a time"
        );
        drop(probe);
        g.record("e", false);
        assert_eq!(g.circuit("e"), CircuitState::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(250));
        drop(g.admit("e", None).unwrap());
        g.record("e", true);
        assert_eq!(g.circuit("e"), CircuitState::Closed, "a good probe closes");
        assert!(g.admit("e", None).is_ok());
    }
}
