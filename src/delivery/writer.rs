//! The outcome writer: handlers hand their attempt outcome to one task that
//! commits many outcomes per transaction, then answers each handler. A job
//! is acked only after its outcome is durable, and the database sees a few
//! large transactions instead of one per delivery.

use crate::delivery::batcher::Batcher;
use crate::error::AppError;
use crate::store::deliveries::{self, Finished};
use crate::store::Store;
use crate::time::now_ms;

const MAX_BATCH: usize = 512;

pub type OutcomeWriter = Batcher<Finished, ()>;

/// Starts the writer; it stops when the last handle is dropped.
pub fn spawn(store: Store, disable_after: std::time::Duration) -> OutcomeWriter {
    let disable_after_ms = disable_after.as_millis() as i64;
    Batcher::spawn(MAX_BATCH, move |batch: Vec<Finished>| {
        let store = store.clone();
        async move {
            match deliveries::apply_outcomes(&store, &batch, now_ms(), disable_after_ms).await {
                Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                Err(e) if batch.len() > 1 => {
                    // One bad outcome must not fail its neighbours: retry singly.
                    tracing::warn!(error = %e, size = batch.len(), "outcome batch failed; writing one by one");
                    let mut results = Vec::with_capacity(batch.len());
                    for f in &batch {
                        results.push(
                            deliveries::apply_outcomes(
                                &store,
                                std::slice::from_ref(f),
                                now_ms(),
                                disable_after_ms,
                            )
                            .await,
                        );
                    }
                    results
                }
                Err(e) => vec![Err(AppError::internal(e.message))],
            }
        }
    })
}
