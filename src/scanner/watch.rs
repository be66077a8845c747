//! Outage tracking for one chain's node: backoff between tries while it
//! fails, one log line when an outage starts and one when it ends (never a
//! line per scan), and the `payhook_chain_node_up` gauge.

use std::time::Duration;

use tokio::time::Instant;

use crate::scanner::node::NodeError;

/// Longest wait between two tries of a failing node.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct NodeWatch {
    chain: String,
    origin: String,
    interval: Duration,
    failures: u32,
    since: Option<Instant>,
    next_try: Option<Instant>,
}

impl NodeWatch {
    pub fn new(chain: &str, origin: &str, interval: Duration) -> NodeWatch {
        NodeWatch {
            chain: chain.to_string(),
            origin: origin.to_string(),
            interval,
            failures: 0,
            since: None,
            next_try: None,
        }
    }

    /// Whether the backoff after the last failure has passed.
    pub fn ready(&self) -> bool {
        self.next_try.is_none_or(|t| Instant::now() >= t)
    }

    /// Consecutive failed tries (0 while the node answers).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Wait after failure `n` (1-based): `interval·2^(n-1)`, at most 30 s.
    pub fn backoff(interval: Duration, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        interval
            .saturating_mul(factor)
            .min(MAX_BACKOFF.max(interval))
    }

    pub fn failed(&mut self, e: &NodeError) {
        self.failures += 1;
        let now = Instant::now();
        if self.failures == 1 {
            self.since = Some(now);
            tracing::warn!(
                chain = %self.chain,
                node = %self.origin,
                kind = e.kind(),
                error = %e,
                "chain node failing: nothing on this chain is confirmed until it answers; \
                 retrying with backoff (logged once per outage)"
            );
        }
        self.next_try = Some(now + Self::backoff(self.interval, self.failures));
        crate::metrics::chain_node(&self.chain, false, Some(e.kind()));
    }

    pub fn succeeded(&mut self, head: i64) {
        if self.failures > 0 {
            tracing::info!(
                chain = %self.chain,
                node = %self.origin,
                failed_tries = self.failures,
                outage_secs = self.since.map(|s| s.elapsed().as_secs()).unwrap_or(0),
                "chain node answering again"
            );
        }
        self.failures = 0;
        self.since = None;
        self.next_try = None;
        crate::metrics::chain_node(&self.chain, true, None);
        crate::metrics::chain_head(&self.chain, head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let i = Duration::from_secs(5);
        assert_eq!(NodeWatch::backoff(i, 1), Duration::from_secs(5));
        assert_eq!(NodeWatch::backoff(i, 2), Duration::from_secs(10));
        assert_eq!(NodeWatch::backoff(i, 3), Duration::from_secs(20));
        assert_eq!(NodeWatch::backoff(i, 4), Duration::from_secs(30));
        assert_eq!(NodeWatch::backoff(i, 400), Duration::from_secs(30));
        // An interval longer than the cap is never shortened.
        let long = Duration::from_secs(60);
        assert_eq!(NodeWatch::backoff(long, 3), long);
    }
}
