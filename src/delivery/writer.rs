//! The outcome writer: handlers hand their attempt outcome to one task that
//! commits many outcomes per transaction, then answers each handler. A job
//! is acked only after its outcome is durable, and the database sees a few
//! large transactions instead of one per delivery.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::delivery::batcher::Batcher;
use crate::delivery::outcome::{self, Finished, HealthRules};
use crate::error::{AppError, AppResult, ErrorKind};
use crate::store::{jobs, outcomes, Store};
use crate::time::now_ms;

const MAX_BATCH: usize = 512;

/// How long one write may wait. Normally a write takes milliseconds; waiting
/// longer means the write lock is held elsewhere — at shutdown, by a queue
/// transaction apalis no longer polls, which is only released once running
/// jobs finish. Failing the write then lets them finish (the job is retried
/// later: at-least-once) instead of deadlocking the stop.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// How long a handler keeps trying to record an outcome.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// Until it is recorded (or the process stops): a request was sent,
    /// and running the job again would send it again because the
    /// *database* failed.
    UntilRecorded,
    /// Up to this long (no request was sent; a delivery left without a job
    /// is found by the reconciler, `store::jobs::jobless`).
    For(Duration),
}

/// Hands outcomes to the batching writer and keeps trying while the
/// database refuses them, with one log line when recording starts failing
/// and one when it works again.
#[derive(Clone)]
pub struct OutcomeWriter {
    batcher: Batcher<Finished, ()>,
    /// Handlers waiting for a failed write to go through.
    waiting: Arc<AtomicI64>,
    failing: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

impl OutcomeWriter {
    /// Records `finished`; an `Err` only once patience (or the process) ran out.
    pub async fn record(&self, finished: Finished, patience: Patience) -> AppResult<()> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        let mut counted = false;
        loop {
            let result = self.batcher.call(finished.clone()).await;
            let e = match result {
                Ok(()) => {
                    if counted {
                        self.done_waiting();
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            crate::metrics::outcome_write_failed();
            if !counted {
                counted = true;
                let waiting = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
                crate::metrics::outcome_writes_waiting(waiting);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "recording attempt outcomes failed; retrying until the database takes them");
                }
            }
            let out_of_patience = match patience {
                Patience::UntilRecorded => false,
                Patience::For(limit) => started.elapsed() + pause > limit,
            };
            if out_of_patience || self.shutdown.is_cancelled() {
                self.done_waiting();
                return Err(e);
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn done_waiting(&self) {
        let left = self.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        crate::metrics::outcome_writes_waiting(left);
        if left == 0 && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("recording attempt outcomes works again");
        }
    }
}

/// Plans the batch (`delivery::outcome`), has the store write the plan,
/// then parks the endpoints the plan asks for, each in a task of its own:
/// parking a large backlog takes a while, and the outcomes behind this
/// batch must not wait for it. Parking is an optimisation: a job it misses
/// is held back when it runs.
async fn write(store: &Store, batch: &[Finished], rules: HealthRules) -> AppResult<()> {
    let (plan, parks) = outcome::plan(batch, now_ms(), rules);
    match tokio::time::timeout(WRITE_DEADLINE, outcomes::write(store, &plan)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(AppError::new(
                ErrorKind::Unavailable,
                format!(
                    "recording outcomes took over {WRITE_DEADLINE:?} (database write lock busy)"
                ),
            ))
        }
    }
    for (endpoint, until_ms) in parks {
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = jobs::park_endpoint(store.write_db(), &endpoint, until_ms).await {
                tracing::debug!(error = %e, "parking an endpoint's queued jobs failed");
            }
        });
    }
    Ok(())
}

/// Starts the writer; it stops when the last handle is dropped.
pub fn spawn(store: Store, rules: HealthRules, shutdown: CancellationToken) -> OutcomeWriter {
    let in_flight = store.writer_connections();
    let batcher = Batcher::spawn(MAX_BATCH, in_flight, move |batch: Vec<Finished>| {
        let store = store.clone();
        async move {
            match write(&store, &batch, rules).await {
                Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                Err(e) if batch.len() > 1 && e.kind != ErrorKind::Unavailable => {
                    // One bad outcome must not fail its neighbours: retry singly.
                    tracing::warn!(error = %e, size = batch.len(), "outcome batch failed; writing one by one");
                    let mut results = Vec::with_capacity(batch.len());
                    for f in &batch {
                        results.push(write(&store, std::slice::from_ref(f), rules).await);
                    }
                    results
                }
                Err(e) => batch
                    .iter()
                    .map(|_| Err(AppError::new(e.kind, e.message.clone())))
                    .collect(),
            }
        }
    });
    OutcomeWriter {
        batcher,
        waiting: Arc::new(AtomicI64::new(0)),
        failing: Arc::new(AtomicBool::new(false)),
        shutdown,
    }
}
