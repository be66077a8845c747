//! The outcome writer: handlers hand their attempt outcome to one task that
//! commits many outcomes per transaction, then answers each handler. A job
//! is acked only after its outcome is durable, and the database sees a few
//! large transactions instead of one per delivery.

use std::time::Duration;

use crate::delivery::batcher::Batcher;
use crate::error::{AppError, AppResult, ErrorKind};
use crate::store::deliveries::{self, Finished};
use crate::store::Store;
use crate::time::now_ms;

const MAX_BATCH: usize = 512;

/// How long one write may wait. Normally a write takes milliseconds; waiting
/// longer means the write lock is held elsewhere — at shutdown, by a queue
/// transaction apalis no longer polls, which is only released once running
/// jobs finish. Failing the write then lets them finish (the job is retried
/// later: at-least-once) instead of deadlocking the stop.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

pub type OutcomeWriter = Batcher<Finished, ()>;

async fn write(store: &Store, batch: &[Finished], disable_after_ms: i64) -> AppResult<()> {
    match tokio::time::timeout(
        WRITE_DEADLINE,
        deliveries::apply_outcomes(store, batch, now_ms(), disable_after_ms),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(AppError::new(
            ErrorKind::Unavailable,
            format!("recording outcomes took over {WRITE_DEADLINE:?} (database write lock busy)"),
        )),
    }
}

/// Starts the writer; it stops when the last handle is dropped.
pub fn spawn(store: Store, disable_after: Duration) -> OutcomeWriter {
    let disable_after_ms = disable_after.as_millis() as i64;
    Batcher::spawn(MAX_BATCH, move |batch: Vec<Finished>| {
        let store = store.clone();
        async move {
            match write(&store, &batch, disable_after_ms).await {
                Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                Err(e) if batch.len() > 1 && e.kind != ErrorKind::Unavailable => {
                    // One bad outcome must not fail its neighbours: retry singly.
                    tracing::warn!(error = %e, size = batch.len(), "outcome batch failed; writing one by one");
                    let mut results = Vec::with_capacity(batch.len());
                    for f in &batch {
                        results
                            .push(write(&store, std::slice::from_ref(f), disable_after_ms).await);
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
