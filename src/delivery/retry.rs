//! The retry schedule. Delay after failed attempt `n` (1-based) is
//! `min(cap, base·2^(n-1))` scaled by a uniform factor in
//! `[1-jitter, 1+jitter]`, never past `cap` and never below one second
//! (the queue schedules in whole seconds). A 429/503 `Retry-After` raises
//! the delay to its value, still capped at `cap`.

use std::time::{Duration, SystemTime};

use crate::config::RetryConfig;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    pub jitter: f64,
}

impl RetryPolicy {
    pub fn from_config(c: &RetryConfig) -> Self {
        RetryPolicy {
            max_attempts: c.max_attempts,
            base: c.base.0,
            cap: c.cap.0,
            jitter: c.jitter,
        }
    }

    /// `min(cap, base·2^(n-1))` without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(62);
        let factor = 1u64 << exp;
        let ms = (self.base.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(ms).min(self.cap)
    }

    /// The delay after failed attempt `attempt`; `unit` is a uniform sample
    /// in `[0, 1)` (injected so tests can pin it).
    pub fn delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit.clamp(0.0, 1.0);
        let mut d = Duration::from_secs_f64((base * factor).max(0.0));
        if let Some(ra) = retry_after {
            d = d.max(ra);
        }
        d.min(self.cap).max(Duration::from_secs(1).min(self.cap))
    }

    /// Whether attempt `attempt` was the last one allowed.
    pub fn exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 20,
            base: Duration::from_secs(5),
            cap: Duration::from_secs(6 * 3600),
            jitter: 0.2,
        }
    }

    #[test]
    fn schedule_doubles_from_base_until_cap() {
        let p = policy();
        assert_eq!(p.base_delay(1), Duration::from_secs(5));
        assert_eq!(p.base_delay(2), Duration::from_secs(10));
        assert_eq!(p.base_delay(13), Duration::from_secs(20480));
        assert_eq!(p.base_delay(14), Duration::from_secs(21600));
        assert_eq!(p.base_delay(1000), Duration::from_secs(21600));
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    proptest! {
        #[test]
        fn delay_within_jitter_bounds_and_cap(attempt in 1u32..40, unit in 0.0f64..1.0) {
            let p = policy();
            let d = p.delay(attempt, unit, None);
            let base = p.base_delay(attempt).as_secs_f64();
            prop_assert!(d.as_secs_f64() >= (base * 0.8).min(p.cap.as_secs_f64()) - 1e-6);
            prop_assert!(d.as_secs_f64() <= base * 1.2 + 1e-6);
            prop_assert!(d <= p.cap);
            prop_assert!(d >= Duration::from_secs(1));
        }

        #[test]
        fn base_delay_never_decreases(attempt in 1u32..60) {
            let p = policy();
            prop_assert!(p.base_delay(attempt + 1) >= p.base_delay(attempt));
        }

        #[test]
        fn retry_after_is_respected_up_to_cap(attempt in 1u32..30, unit in 0.0f64..1.0, ra in 0u64..100_000) {
            let p = policy();
            let d = p.delay(attempt, unit, Some(Duration::from_secs(ra)));
            prop_assert!(d >= Duration::from_secs(ra).min(p.cap));
            prop_assert!(d <= p.cap);
        }
    }
}
