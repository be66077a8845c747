//! What the configuration means for the delivery workers and the sender:
//! jobs per lane, requests on the wire, polling, orphan and drain times.

use std::time::Duration;

use crate::domain::Lane;

/// A job spends part of its time waiting on the database (its attempt
/// context, its outcome's commit) rather than on the wire; the queue runs
/// this many jobs per request slot so those waits leave no request slot
/// idle (measurements: docs/decisions.md, "Job slots apart from request
/// slots").
pub const TASKS_PER_REQUEST_SLOT: usize = 8;

/// Worker settings derived from config.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs each lane runs at once.
    pub first_concurrency: usize,
    pub retry_concurrency: usize,
    /// Requests on the wire at once, per lane (`delivery.concurrency` and a
    /// quarter of it).
    pub first_requests: usize,
    pub retry_requests: usize,
    pub poll_interval: Duration,
    /// Jobs one fetch takes. SQLite: four per request slot (10 to 512):
    /// under a backlog each fetch and its ack cost about the same whatever
    /// their size, so larger fetches leave the one writer free for outcomes
    /// (drain 8,400 → 10,000/s at 64 slots, docs/benchmarks.md). Postgres:
    /// one per slot (10 to 200): workers there scale out, and a killed
    /// worker's fetched jobs wait for the orphan takeover (four times as
    /// many pushed the scale test's recovery past 30 s). That costs its
    /// drain about a quarter (docs/benchmarks.md, change 2).
    pub batch_size: usize,
    /// A worker silent this long has its jobs handed to others.
    pub orphan_after: Duration,
    /// How long a stop waits for running attempts.
    pub drain: Duration,
    /// `retention.*`, applied by the housekeeping loop.
    pub retention: crate::config::RetentionConfig,
}

impl WorkerSettings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let c = cfg.delivery.concurrency as usize;
        // Retries get their own slots (a quarter, at least 1) so a backlog of
        // retries to failing endpoints cannot take the first attempts' slots.
        let retry = (c / 4).max(1);
        WorkerSettings {
            first_concurrency: c * TASKS_PER_REQUEST_SLOT,
            retry_concurrency: retry * TASKS_PER_REQUEST_SLOT,
            first_requests: c,
            retry_requests: retry,
            poll_interval: Duration::from_millis(200),
            batch_size: if cfg.is_postgres() {
                c.clamp(10, 200)
            } else {
                (c * 4).clamp(10, 512)
            },
            // Longer than one attempt can take, so a busy worker is never
            // mistaken for a dead one.
            orphan_after: (cfg.delivery.timeout.0 * 2).max(Duration::from_secs(10)),
            drain: cfg.delivery.timeout.0 + Duration::from_secs(10),
            retention: cfg.retention.clone(),
        }
    }

    /// Jobs a lane runs at once.
    pub fn concurrency(&self, lane: Lane) -> usize {
        match lane {
            Lane::First => self.first_concurrency,
            Lane::Retry => self.retry_concurrency,
        }
    }
}
