//! Request batching for the hot path: many concurrent handlers each ask for
//! one thing; one task serves whatever has queued up in a single database
//! round trip, then answers each. Under load, batches grow by themselves;
//! when idle, a lone request is served at once (no timer, no added latency).

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::{AppError, AppResult};

type Request<Req, Resp> = (Req, oneshot::Sender<AppResult<Resp>>);

pub struct Batcher<Req, Resp> {
    tx: mpsc::Sender<Request<Req, Resp>>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the serving task. `serve` gets up to `max` requests and returns
    /// one result per request, in order. The task ends with the last handle.
    pub fn spawn<F, Fut>(max: usize, serve: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<AppResult<Resp>>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Request<Req, Resp>>(max * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            while rx.recv_many(&mut batch, max).await > 0 {
                let (reqs, replies): (Vec<Req>, Vec<_>) = batch.drain(..).unzip();
                let n = reqs.len();
                let mut results = serve(reqs).await;
                results.resize_with(n, || {
                    Err(AppError::internal("batch returned too few results"))
                });
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
        });
        Batcher { tx }
    }

    /// Queues one request and waits for its result.
    pub async fn call(&self, req: Req) -> AppResult<Resp> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((req, reply))
            .await
            .map_err(|_| AppError::internal("batching task stopped"))?;
        answer
            .await
            .map_err(|_| AppError::internal("batching task dropped a request"))?
    }
}
