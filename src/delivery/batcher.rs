//! Request batching for the hot path: many concurrent handlers each ask for
//! one thing; one task serves whatever has queued up in a single database
//! round trip, then answers each. Under load, batches grow by themselves;
//! when idle, a lone request is served at once (no timer, no added latency).
//! Several batches may be served at once (`in_flight`).

use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};
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
    /// one result per request, in order; up to `in_flight` batches are
    /// served at once (on Postgres a batch waiting for its commit's fsync
    /// need not hold back the next). The task ends with the last handle.
    pub fn spawn<F, Fut>(max: usize, in_flight: usize, serve: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<AppResult<Resp>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Request<Req, Resp>>(max * 4);
        let in_flight = in_flight.max(1);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            let mut running = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    // Finished batches first: each frees room for the next.
                    biased;
                    Some(()) = running.next(), if !running.is_empty() => {}
                    n = rx.recv_many(&mut batch, max), if open && running.len() < in_flight => {
                        if n == 0 {
                            open = false;
                            continue;
                        }
                        let (reqs, replies): (Vec<Req>, Vec<_>) = batch.drain(..).unzip();
                        let served = serve(reqs);
                        running.push(async move {
                            let mut results = served.await;
                            results.resize_with(replies.len(), || {
                                Err(AppError::internal("batch returned too few results"))
                            });
                            for (reply, result) in replies.into_iter().zip(results) {
                                let _ = reply.send(result);
                            }
                        });
                    }
                    else => break,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::Batcher;

    /// Up to `in_flight` batches are served at once, never more, and every
    /// caller gets its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_up_to_in_flight_batches_at_once_and_answers_each_caller() {
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, p) = (now.clone(), peak.clone());
        let batcher = Batcher::spawn(4, 2, move |reqs: Vec<u32>| {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let running = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                reqs.into_iter().map(|r| Ok(r * 10)).collect()
            }
        });
        let calls: Vec<_> = (0..40u32)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { (i, b.call(i).await.unwrap()) })
            })
            .collect();
        for c in calls {
            let (i, answer) = c.await.unwrap();
            assert_eq!(answer, i * 10);
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "two batches at once, not more"
        );
    }

    /// A batch that answers too few requests fails the rest, not the caller's
    /// wait.
    #[tokio::test]
    async fn a_short_answer_fails_the_requests_left_over() {
        let batcher = Batcher::spawn(8, 1, |reqs: Vec<u32>| async move {
            reqs.into_iter().take(0).map(Ok).collect()
        });
        let e = batcher.call(1).await.unwrap_err();
        assert!(e.message.contains("too few results"), "{}", e.message);
    }
}
