//! The outcome writer: handlers hand their attempt outcome to one task that
//! commits many outcomes per transaction, then answers each handler. A job
//! is acked only after its outcome is durable, and the database sees a few
//! large transactions instead of one per delivery.

use tokio::sync::{mpsc, oneshot};

use crate::error::{AppError, AppResult};
use crate::store::deliveries::{self, Finished};
use crate::store::Store;
use crate::time::now_ms;

const MAX_BATCH: usize = 512;

type Request = (Finished, oneshot::Sender<AppResult<()>>);

#[derive(Clone)]
pub struct OutcomeWriter {
    tx: mpsc::Sender<Request>,
}

impl OutcomeWriter {
    /// Starts the writer task; it ends when every `OutcomeWriter` is dropped.
    pub fn spawn(store: Store) -> OutcomeWriter {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(store, rx));
        OutcomeWriter { tx }
    }

    /// Returns once the outcome is committed.
    pub async fn submit(&self, outcome: Finished) -> AppResult<()> {
        let (done_tx, done_rx) = oneshot::channel();
        self.tx
            .send((outcome, done_tx))
            .await
            .map_err(|_| AppError::internal("outcome writer stopped"))?;
        done_rx
            .await
            .map_err(|_| AppError::internal("outcome writer dropped a request"))?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcomes: Vec<Finished> = batch.iter().map(|(o, _)| o.clone()).collect();
        let r = deliveries::apply_outcomes(&store, &outcomes, now_ms()).await;
        match r {
            Ok(()) => {
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) if batch.len() > 1 => {
                // One bad outcome must not fail its neighbours: retry singly.
                tracing::warn!(error = %e, size = batch.len(), "outcome batch failed; writing one by one");
                for (outcome, done) in batch.drain(..) {
                    let res = deliveries::apply_outcomes(
                        &store,
                        std::slice::from_ref(&outcome),
                        now_ms(),
                    )
                    .await;
                    let _ = done.send(res);
                }
            }
            Err(e) => {
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(AppError::internal(e.message.clone())));
                }
            }
        }
    }
}
