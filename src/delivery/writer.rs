//! The outcome writer: handlers hand their attempt outcome to one task that
//! commits many outcomes per transaction, then answers each handler. A job
//! is acked only after its outcome is durable, and the database sees a few
//! large transactions instead of one per delivery.

use std::time::Duration;

use crate::delivery::batcher::Batcher;
use crate::delivery::outcome::{self, Finished};
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

pub type OutcomeWriter = Batcher<Finished, ()>;

/// Plans the batch (`delivery::outcome`), has the store write the plan,
/// then parks the endpoints the plan asks for, each in a task of its own:
/// parking a large backlog takes a while, and the outcomes behind this
/// batch must not wait for it. Parking is an optimisation: a job it misses
/// is held back when it runs.
async fn write(store: &Store, batch: &[Finished], disable_after: Duration) -> AppResult<()> {
    let (plan, parks) = outcome::plan(batch, now_ms(), disable_after);
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
            if let Err(e) = jobs::park_endpoint(store.db(), &endpoint, until_ms).await {
                tracing::debug!(error = %e, "parking an endpoint's queued jobs failed");
            }
        });
    }
    Ok(())
}

/// Starts the writer; it stops when the last handle is dropped.
pub fn spawn(store: Store, disable_after: Duration) -> OutcomeWriter {
    Batcher::spawn(MAX_BATCH, move |batch: Vec<Finished>| {
        let store = store.clone();
        async move {
            match write(&store, &batch, disable_after).await {
                Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                Err(e) if batch.len() > 1 && e.kind != ErrorKind::Unavailable => {
                    // One bad outcome must not fail its neighbours: retry singly.
                    tracing::warn!(error = %e, size = batch.len(), "outcome batch failed; writing one by one");
                    let mut results = Vec::with_capacity(batch.len());
                    for f in &batch {
                        results.push(write(&store, std::slice::from_ref(f), disable_after).await);
                    }
                    results
                }
                Err(e) => batch
                    .iter()
                    .map(|_| Err(AppError::new(e.kind, e.message.clone())))
                    .collect(),
            }
        }
    })
}
