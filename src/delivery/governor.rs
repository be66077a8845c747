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

use crate::urls::key_origin as origin;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Forget idle endpoints after this long (their state is back to fresh).
const IDLE_EVICT: Duration = Duration::from_secs(600);
const EVICT_CHECK_EVERY: usize = 4096;
/// How long a job held by the in-flight cap waits before it tries again.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);
/// How long a queued caller waits for an in-flight slot.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);
/// How long a caller queued behind an endpoint that has never finished a
/// request (new to this process) waits before it gives its worker slot back;
/// behind one that has, it waits out `IN_FLIGHT_WAIT`. A new endpoint that is
/// dark would otherwise hold every queued worker for the whole wait. Such an
/// endpoint counts as stuck at once, but is held back only `SILENT_HOLD`
/// (a healthy one may just be slower than 100 ms).
const FIRST_WAIT: Duration = Duration::from_millis(100);
/// How long callers of a new endpoint that left one waiting `FIRST_WAIT`
/// with nothing finished are held back (its queued jobs parked as long).
const SILENT_HOLD: Duration = Duration::from_secs(2);
/// An endpoint that finished a request this recently is "answering".
const MOVING: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct GovernorSettings {
    pub rate_per_sec: u32,
    pub burst: u32,
    pub max_in_flight: u32,
    /// How many callers may queue for an endpoint that is answering (the
    /// worker concurrency); a stuck endpoint gets only `max_in_flight`.
    pub max_waiters: u32,
    /// The request timeout: a stuck endpoint's slots free up about this often.
    pub request_timeout: Duration,
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
    share: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
    slots: Arc<Semaphore>,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    /// Callers queued for an in-flight slot.
    waiters: u32,
    /// When a request to it last finished, whatever its outcome.
    last_completed: Option<Instant>,
    first_seen: Instant,
    /// A caller queued behind its full cap gave up after `FIRST_WAIT` before
    /// it had ever finished a request: new and silent.
    waited_in_silence: bool,
    /// Until when its queued jobs were last parked.
    parked_until: Option<Instant>,
    last_used: Instant,
}

impl Endpoint {
    /// Finished a request within the last second.
    fn answering(&self) -> bool {
        self.last_completed.is_some_and(|t| t.elapsed() < MOVING)
    }

    /// No request finished for over a second. A new endpoint gets a second
    /// before it can be called stuck, unless it left a caller waiting
    /// `FIRST_WAIT` with nothing finished.
    fn stuck(&self) -> bool {
        !self.answering()
            && (self.last_completed.is_some()
                || self.waited_in_silence
                || self.first_seen.elapsed() >= MOVING)
    }
}

pub struct EndpointGovernor {
    settings: GovernorSettings,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    clock: DefaultClock,
    /// How many worker processes share every endpoint's rate limit (see
    /// [`EndpointGovernor::set_share`]).
    share: std::sync::atomic::AtomicU32,
}

impl EndpointGovernor {
    pub fn new(settings: GovernorSettings) -> Self {
        EndpointGovernor {
            settings,
            endpoints: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
            share: std::sync::atomic::AtomicU32::new(1),
        }
    }

    /// Rate limits compose across processes as equal shares: with `n` live
    /// worker processes each admits `rate / n` per second per endpoint (and
    /// `burst / n`, at least 1), so together they stay within the limit.
    pub fn set_share(&self, n: u32) {
        self.share
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Admits one request to `endpoint` or says why not and for how long.
    /// `per_sec` overrides the default rate (a merchant's `rate_limit_per_sec`).
    ///
    /// At the in-flight cap, callers queue for a slot (at most
    /// `IN_FLIGHT_WAIT`); for a stuck endpoint only `max_in_flight` of them,
    /// further callers are held back at once, so a stuck endpoint ties up
    /// at most twice its cap of worker slots.
    pub async fn admit(&self, endpoint: &str, per_sec: Option<u32>) -> Result<Pass, Held> {
        let per_sec = per_sec
            .filter(|r| *r > 0)
            .unwrap_or(self.settings.rate_per_sec)
            .max(1);
        let slots = {
            let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
            let e = self.entry(&mut map, endpoint, per_sec);
            self.circuit_allows(e)?;
            // Answering (or new): callers may queue; stuck: only its cap's worth.
            let max_waiters = if e.stuck() {
                self.settings.max_in_flight
            } else {
                self.settings.max_waiters.max(self.settings.max_in_flight)
            };
            match e.slots.clone().try_acquire_owned() {
                Ok(slot) => return self.take(e, slot),
                Err(_) if e.waiters < max_waiters => {
                    e.waiters += 1;
                    e.slots.clone()
                }
                Err(_) => return Err(Held::InFlight(self.hold_for(e))),
            }
        };
        let waited = self.wait_for_slot(endpoint, slots).await;
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let e = self.entry(&mut map, endpoint, per_sec);
        e.waiters = e.waiters.saturating_sub(1);
        match waited {
            Ok(Ok(slot)) => {
                self.circuit_allows(e)?;
                self.take(e, slot)
            }
            _ => {
                e.waited_in_silence |= e.last_completed.is_none();
                Err(Held::InFlight(self.hold_for(e)))
            }
        }
    }

    /// A queued caller's wait for a slot: `FIRST_WAIT`, and the rest of
    /// `IN_FLIGHT_WAIT` once the endpoint has finished a request.
    async fn wait_for_slot(
        &self,
        endpoint: &str,
        slots: Arc<Semaphore>,
    ) -> Result<Result<OwnedSemaphorePermit, tokio::sync::AcquireError>, tokio::time::error::Elapsed>
    {
        let acquire = slots.acquire_owned();
        tokio::pin!(acquire);
        if let Ok(got) = tokio::time::timeout(FIRST_WAIT, &mut acquire).await {
            return Ok(got);
        }
        let answered = {
            let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
            map.get(endpoint)
                .is_some_and(|e| e.last_completed.is_some())
        };
        let rest = if answered {
            IN_FLIGHT_WAIT - FIRST_WAIT
        } else {
            Duration::ZERO
        };
        tokio::time::timeout(rest, acquire).await
    }

    /// How long a caller turned away by the in-flight cap stays away: a
    /// second, or about half a request timeout for a stuck endpoint (its
    /// slots are held by requests that will time out).
    fn hold_for(&self, e: &Endpoint) -> Duration {
        if e.last_completed.is_none() && e.waited_in_silence {
            // New and silent so far: long enough to park its queued jobs,
            // short for a healthy endpoint slower than `FIRST_WAIT`.
            SILENT_HOLD
        } else if e.stuck() {
            (self.settings.request_timeout / 2).clamp(IN_FLIGHT_RETRY, Duration::from_secs(5))
        } else {
            IN_FLIGHT_RETRY
        }
    }

    fn entry<'m>(
        &self,
        map: &'m mut HashMap<String, Endpoint>,
        endpoint: &str,
        per_sec: u32,
    ) -> &'m mut Endpoint {
        let now = Instant::now();
        if map.len() >= EVICT_CHECK_EVERY && map.len() % EVICT_CHECK_EVERY == 0 {
            map.retain(|_, e| {
                now.duration_since(e.last_used) < IDLE_EVICT
                    || e.open_until.is_some()
                    || e.waiters > 0
            });
        }
        let share = self.share.load(std::sync::atomic::Ordering::Relaxed);
        let e = map
            .entry(endpoint.to_string())
            .or_insert_with(|| self.fresh(per_sec, share, now));
        e.last_used = now;
        if (e.per_sec, e.share) != (per_sec, share) {
            e.per_sec = per_sec;
            e.share = share;
            e.limiter = Arc::new(limiter(per_sec, self.settings.burst, share));
        }
        e
    }

    /// Circuit: open → hold until the cooldown ends; then one probe at a time.
    fn circuit_allows(&self, e: &Endpoint) -> Result<(), Held> {
        if let Some(until) = e.open_until {
            let now = Instant::now();
            if now < until {
                return Err(Held::CircuitOpen(until - now));
            }
            if e.probing {
                return Err(Held::CircuitOpen(
                    self.settings.cooldown.min(Duration::from_secs(5)),
                ));
            }
        }
        Ok(())
    }

    /// With an in-flight slot in hand: the rate limit, then the pass.
    fn take(&self, e: &mut Endpoint, slot: OwnedSemaphorePermit) -> Result<Pass, Held> {
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

    /// True for the first caller that asks to park `endpoint` for `wait`
    /// while it is not already parked that long: one bulk park per hold.
    pub fn claim_park(&self, endpoint: &str, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = map.get_mut(endpoint) else {
            return false;
        };
        if e.parked_until
            .is_some_and(|p| p + Duration::from_secs(1) >= until)
        {
            return false;
        }
        e.parked_until = Some(until);
        true
    }

    /// Records the outcome of an admitted request.
    pub fn record(&self, endpoint: &str, success: bool) {
        let now = Instant::now();
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = map.get_mut(endpoint) else {
            return;
        };
        e.last_completed = Some(now);
        if success {
            if e.open_until.is_some() {
                crate::metrics::circuit(origin(endpoint), false);
                tracing::info!(endpoint = origin(endpoint), "circuit closed");
            }
            e.consecutive_failures = 0;
            e.open_until = None;
            e.probing = false;
            return;
        }
        e.consecutive_failures = e.consecutive_failures.saturating_add(1);
        if e.probing || e.consecutive_failures >= self.settings.failure_threshold {
            if e.open_until.is_none() || e.probing {
                tracing::warn!(
                    endpoint = origin(endpoint),
                    failures = e.consecutive_failures,
                    "circuit opened"
                );
                crate::metrics::circuit(origin(endpoint), true);
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

    fn fresh(&self, per_sec: u32, share: u32, now: Instant) -> Endpoint {
        Endpoint {
            per_sec,
            share,
            limiter: Arc::new(limiter(per_sec, self.settings.burst, share)),
            slots: Arc::new(Semaphore::new(self.settings.max_in_flight.max(1) as usize)),
            consecutive_failures: 0,
            open_until: None,
            probing: false,
            waiters: 0,
            waited_in_silence: false,
            last_completed: None,
            first_seen: now,
            parked_until: None,
            last_used: now,
        }
    }
}

/// One process's GCRA for an endpoint: its `1/share` of `per_sec` (one
/// request every `share / per_sec` seconds) and of the burst.
fn limiter(per_sec: u32, burst: u32, share: u32) -> DefaultDirectRateLimiter {
    let share = share.max(1);
    let period = Duration::from_secs_f64(share as f64 / per_sec.max(1) as f64);
    let burst = NonZeroU32::new(burst / share).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GovernorSettings {
        GovernorSettings {
            rate_per_sec: 10,
            burst: 3,
            max_in_flight: 2,
            max_waiters: 2,
            request_timeout: Duration::from_secs(2),
            failure_threshold: 3,
            cooldown: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn rate_limit_burst_then_wait_per_endpoint() {
        let g = EndpointGovernor::new(GovernorSettings {
            max_in_flight: 100,
            ..settings()
        });
        let mut passes = Vec::new();
        for _ in 0..3 {
            passes.push(g.admit("https://a:443/", None).await.unwrap());
        }
        match g.admit("https://a:443/", None).await {
            Err(Held::RateLimited(w)) => assert!(
                w > Duration::ZERO && w <= Duration::from_millis(100),
                "{w:?}"
            ),
            other => panic!("expected a rate-limit hold, got {other:?}"),
        }
        assert!(
            g.admit("https://b:443/", None).await.is_ok(),
            "another endpoint has its own bucket"
        );
        drop(passes);
    }

    #[tokio::test]
    async fn in_flight_cap_queues_up_to_the_cap_then_holds() {
        let g = Arc::new(EndpointGovernor::new(GovernorSettings {
            rate_per_sec: 1000,
            burst: 1000,
            ..settings()
        }));
        let a = g.admit("e", None).await.unwrap();
        let _b = g.admit("e", None).await.unwrap();
        // A third caller queues and gets the slot `a` frees.
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.admit("e", None).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(a);
        assert!(waiter.await.unwrap().is_ok());
        // Cap held (2) and two callers queued (2): the next is held at once.
        let _c = g.admit("e", None).await.unwrap();
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.admit("e", None).await.map(|_| ()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        assert!(matches!(g.admit("e", None).await, Err(Held::InFlight(_))));
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "held at once, not queued"
        );
        for q in queued {
            assert!(
                matches!(q.await.unwrap(), Err(Held::InFlight(_))),
                "queued callers give up after the wait"
            );
        }
    }

    /// Behind an endpoint that never answered, a queued caller gives its
    /// worker back after `FIRST_WAIT`; behind one that has answered, even
    /// after a second idle, a caller waits for a slot that frees later.
    #[tokio::test]
    async fn a_caller_waits_long_only_behind_an_endpoint_that_answers() {
        let g = Arc::new(EndpointGovernor::new(GovernorSettings {
            rate_per_sec: 1000,
            burst: 1000,
            max_in_flight: 1,
            request_timeout: Duration::from_secs(10),
            ..settings()
        }));
        let dark = g.admit("dark", None).await.unwrap();
        let t = Instant::now();
        let held = g.admit("dark", None).await;
        let gave_up = t.elapsed();
        assert!(
            gave_up >= FIRST_WAIT && gave_up < IN_FLIGHT_WAIT / 2,
            "gave up after {gave_up:?}"
        );
        // Held back (and its jobs parked) for `SILENT_HOLD`, not for the
        // half request timeout of an endpoint that stopped answering.
        assert_eq!(held.unwrap_err(), Held::InFlight(SILENT_HOLD));
        drop(dark);

        // An endpoint that answered before, then was idle for over a second:
        // a caller still waits for a slot that frees after 300 ms.
        drop(g.admit("live", None).await.unwrap());
        g.record("live", true);
        tokio::time::sleep(MOVING + Duration::from_millis(100)).await;
        let busy = g.admit("live", None).await.unwrap();
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.admit("live", None).await.map(|_| ()) });
        tokio::time::sleep(FIRST_WAIT * 3).await;
        drop(busy);
        assert!(
            waiter.await.unwrap().is_ok(),
            "a slot freed after {:?} went to the queued caller",
            FIRST_WAIT * 3
        );
    }

    #[tokio::test]
    async fn circuit_opens_after_threshold_then_one_probe_decides() {
        let g = EndpointGovernor::new(GovernorSettings {
            rate_per_sec: 1000,
            burst: 1000,
            max_in_flight: 10,
            ..settings()
        });
        for _ in 0..3 {
            drop(g.admit("e", None).await.unwrap());
            g.record("e", false);
        }
        assert_eq!(g.circuit("e"), CircuitState::Open);
        assert!(matches!(
            g.admit("e", None).await,
            Err(Held::CircuitOpen(_))
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(g.circuit("e"), CircuitState::HalfOpen);
        let probe = g
            .admit("e", None)
            .await
            .expect("one probe after the cooldown");
        assert!(
            matches!(g.admit("e", None).await, Err(Held::CircuitOpen(_))),
            "only one probe at a time"
        );
        drop(probe);
        g.record("e", false);
        assert_eq!(g.circuit("e"), CircuitState::Open, "a failed probe reopens");
        tokio::time::sleep(Duration::from_millis(250)).await;
        drop(g.admit("e", None).await.unwrap());
        g.record("e", true);
        assert_eq!(g.circuit("e"), CircuitState::Closed, "a good probe closes");
        assert!(g.admit("e", None).await.is_ok());
    }
}
