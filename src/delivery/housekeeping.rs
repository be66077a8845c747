//! The delivery side's background loops, each a few lines around a
//! `store::jobs` statement: pruning finished jobs, vacuuming the Postgres
//! queue table, sharing rate limits among live worker processes, relaying
//! other processes' job inserts to this process's workers, and queueing
//! again any pending delivery left without a job.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::delivery::sender::Sender;
use crate::delivery::settings::WorkerSettings;
use crate::domain::Lane;
use crate::error::AppResult;
use crate::store::jobs::{self, DeliveryJob, NewJob};
use crate::store::{endpoints, retention, Store};
use crate::time::now_ms;

/// A pending delivery is looked at by the reconciler once it has been due
/// this long (any job it has would normally have run by then).
const JOBLESS_AFTER: Duration = Duration::from_secs(60);
/// Deliveries queued again per reconciler round (the rest wait a round).
const REQUEUE_BATCH: i64 = 500;
/// Pending deliveries the reconciler looks at per round (every 30 s), in id
/// order from where the last round stopped: a round costs the same under
/// any backlog, and a backlog of 1,000,000 is looked through in 25 minutes.
const JOBLESS_WINDOW: i64 = 20_000;

/// Starts the loops; the handle ends when they have all seen `shutdown`.
pub fn spawn(
    store: &Store,
    sender: &Arc<Sender>,
    settings: &WorkerSettings,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let secs = Duration::from_secs;
    let (s, stop) = (store.clone(), shutdown.clone());
    let prune = every(secs(30), false, stop.clone(), move || prune(s.clone()));
    let s = store.clone();
    let vacuum = every(secs(10), false, stop.clone(), move || vacuum(s.clone()));
    let (s, tx) = (store.clone(), sender.clone());
    let share = every(secs(2), true, stop.clone(), move || {
        share(s.clone(), tx.clone())
    });
    // A job locked by a worker for this long is lost, not running: no
    // attempt, outcome write included, is given that long.
    let stale_lock = (settings.orphan_after * 4).max(secs(600));
    let (s, window) = (
        store.clone(),
        Arc::new(std::sync::Mutex::new(String::new())),
    );
    let reconcile = every(secs(30), true, stop.clone(), move || {
        reconcile(s.clone(), stale_lock, window.clone())
    });
    let (s, keep) = (store.clone(), settings.retention.clone());
    let retention = every(secs(60), false, stop.clone(), move || {
        retain(s.clone(), keep.clone())
    });
    let s = store.clone();
    let sample = every(secs(60), true, stop.clone(), move || sample(s.clone()));
    let relay = jobs::relay_inserts(store.queue_db().clone(), store.signal().clone(), stop);
    tokio::spawn(async move {
        futures::join!(prune, vacuum, share, reconcile, retention, sample, relay);
    })
}

/// The queue's depth and the open dead letters, for the console's charts.
async fn sample(store: Store) {
    if let Err(e) = crate::store::stats::sample_queue(&store, now_ms()).await {
        tracing::debug!(error = %e, "sampling the queue failed");
    }
}

/// Finished queue jobs; rotated-out secrets whose overlap ended.
async fn prune(store: Store) {
    if let Err(e) = jobs::prune(store.write_db()).await {
        tracing::warn!(error = %e, "pruning finished queue jobs failed");
    }
    if let Err(e) = endpoints::clear_expired(&store, now_ms()).await {
        tracing::warn!(error = %e, "clearing expired previous secrets failed");
    }
}

/// Postgres: every job row is inserted, updated when picked and deleted
/// when done, so the queue table sheds thousands of dead rows a second
/// under load; left to autovacuum the pick query slows down.
async fn vacuum(store: Store) {
    if let Err(e) = jobs::vacuum(store.db()).await {
        tracing::debug!(error = %e, "vacuuming the queue table failed; next try in 10 s");
    }
}

/// The sender's rate limits become as many equal shares as there are live
/// worker processes on this database.
async fn share(store: Store, sender: Arc<Sender>) {
    if let Ok(n) = jobs::live_processes(store.db()).await {
        sender.set_rate_share(n.clamp(1, u32::MAX as i64) as u32);
    }
}

/// Where the reconciler's next window of pending deliveries starts.
type Cursor = Arc<std::sync::Mutex<String>>;

async fn reconcile(store: Store, stale_lock: Duration, cursor: Cursor) {
    if let Err(e) = requeue_jobless(&store, stale_lock, &cursor).await {
        tracing::warn!(error = %e, "looking for deliveries without a queued job failed");
    }
}

async fn retain(store: Store, keep: RetentionConfig) {
    if let Err(e) = apply_retention(&store, &keep).await {
        tracing::warn!(error = %e, "applying retention failed; next pass in a minute");
    }
}

/// Queues the next attempt of every pending delivery that has been due a
/// while with no live job (its worker gave up on it, or its deferral could
/// not be written while the database failed), among the next
/// [`JOBLESS_WINDOW`] pending deliveries after `cursor`. Candidates are found outside
/// any transaction and checked again inside the one that queues them, one
/// reconciler at a time.
async fn requeue_jobless(store: &Store, stale_lock: Duration, cursor: &Cursor) -> AppResult<u64> {
    let now = now_ms();
    let due_before = now - JOBLESS_AFTER.as_millis() as i64;
    let locked_since = now - stale_lock.as_millis() as i64;
    let window = jobs::Window {
        after: cursor.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        size: JOBLESS_WINDOW,
    };
    let (found, next) =
        jobs::jobless(store.db(), due_before, locked_since, REQUEUE_BATCH, &window).await?;
    *cursor.lock().unwrap_or_else(|p| p.into_inner()) = next.unwrap_or_default();
    if found.is_empty() {
        return Ok(0);
    }
    let candidates: Vec<_> = found.into_iter().map(|(id, _)| id).collect();
    let mut tx = store.begin_write().await?;
    let found = jobs::still_jobless(&mut tx, &candidates, locked_since).await?;
    let next: Vec<NewJob> = found
        .into_iter()
        .map(|(delivery_id, attempts)| NewJob {
            job: DeliveryJob {
                delivery_id,
                attempt: attempts + 1,
            },
            run_at_ms: now,
            lane: Lane::for_attempt(attempts + 1),
        })
        .collect();
    jobs::push_many(&mut tx, &next).await?;
    store.commit(tx, !next.is_empty()).await?;
    let n = next.len() as u64;
    if n == 0 {
        return Ok(0);
    }
    crate::metrics::requeued(n);
    tracing::warn!(
        deliveries = n,
        "pending deliveries without a queued job were queued again"
    );
    Ok(n)
}

/// Rows deleted per retention batch, and batches per kind per pass: a pass
/// is bounded, and the pause between batches lets outcome writes through.
const RETENTION_BATCH: i64 = 500;
const RETENTION_BATCHES: usize = 200;
const RETENTION_PAUSE: Duration = Duration::from_millis(20);

/// One retention pass (`retention.*`); returns the rows deleted.
pub async fn apply_retention(store: &Store, keep: &RetentionConfig) -> AppResult<u64> {
    let now = now_ms();
    let ms = |d: Duration| now.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64);
    let (succeeded, dead) = (ms(keep.succeeded.0), ms(keep.dead.0));
    let mut total = 0;
    for kind in 0..3 {
        for _ in 0..RETENTION_BATCHES {
            let n = match kind {
                0 => retention::succeeded_batch(store, succeeded, RETENTION_BATCH).await?,
                1 => retention::dead_batch(store, dead, RETENTION_BATCH).await?,
                // Nothing refers to these any more: the shorter period applies.
                _ => retention::events_batch(store, succeeded.max(dead), RETENTION_BATCH).await?,
            };
            total += n;
            if n < RETENTION_BATCH as u64 {
                break;
            }
            tokio::time::sleep(RETENTION_PAUSE).await;
        }
    }
    total += retention::endpoint_health(store, dead).await?;
    // The console's per-minute counts: its charts go back a day.
    crate::store::stats::forget(store, now - 2 * 86_400_000).await?;
    if total > 0 {
        tracing::info!(
            rows = total,
            "retention pass deleted old deliveries, dead letters and events"
        );
    }
    Ok(total)
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
