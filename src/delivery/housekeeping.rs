//! The delivery side's background loops, each a few lines around a
//! `store::jobs` statement: pruning finished jobs, vacuuming the Postgres
//! queue table, sharing rate limits among live worker processes, and
//! relaying other processes' job inserts to this process's workers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::delivery::sender::Sender;
use crate::store::{jobs, Store};

/// Starts the loops; the handle ends when they have all seen `shutdown`.
pub fn spawn(store: &Store, sender: &Arc<Sender>, shutdown: &CancellationToken) -> JoinHandle<()> {
    let prune = every(Duration::from_secs(30), false, shutdown.clone(), {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move {
                if let Err(e) = jobs::prune(store.db()).await {
                    tracing::warn!(error = %e, "pruning finished queue jobs failed");
                }
            }
        }
    });
    // Postgres: every job row is inserted, updated when picked and deleted
    // when done, so the queue table sheds thousands of dead rows a second
    // under load; left to autovacuum the pick query slows down.
    let vacuum = every(Duration::from_secs(10), false, shutdown.clone(), {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move {
                if let Err(e) = jobs::vacuum(store.db()).await {
                    tracing::debug!(error = %e, "vacuuming the queue table failed; next try in 10 s");
                }
            }
        }
    });
    // The sender's rate limits become as many equal shares as there are
    // live worker processes on this database.
    let share = every(Duration::from_secs(2), true, shutdown.clone(), {
        let (store, sender) = (store.clone(), sender.clone());
        move || {
            let (store, sender) = (store.clone(), sender.clone());
            async move {
                if let Ok(n) = jobs::live_processes(store.queue_db()).await {
                    sender.set_rate_share(n.clamp(1, u32::MAX as i64) as u32);
                }
            }
        }
    });
    let relay = jobs::relay_inserts(
        store.queue_db().clone(),
        store.signal().clone(),
        shutdown.clone(),
    );
    tokio::spawn(async move {
        futures::join!(prune, vacuum, share, relay);
    })
}

/// Runs `tick` every `period` until `shutdown`, the first time at once or
/// after one period.
async fn every<F, Fut>(period: Duration, at_once: bool, shutdown: CancellationToken, tick: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    if at_once {
        tick().await;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        tick().await;
    }
}
