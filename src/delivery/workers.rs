//! apalis wiring: one worker per lane (first attempts, retries) so a retry
//! backlog never starves new events; explicit names, concurrency, poll
//! interval and batch size; a lane rebuilt after its backend failed; a
//! bounded stop. The queue's tables and statements belong to
//! `store::jobs`; the background loops to [`super::housekeeping`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_core::backend::ext::poll_strategy::Strategy;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::delivery::housekeeping;
use crate::delivery::sender::Sender;
use crate::delivery::settings::WorkerSettings;
use crate::domain::Lane;
use crate::error::{AppError, AppResult};
use crate::store::jobs::DeliveryJob;
use crate::store::{Db, Store};

/// Everything one lane's worker needs.
#[derive(Clone)]
struct LaneWorker {
    lane: Lane,
    name: String,
    concurrency: usize,
    settings: WorkerSettings,
    store: Store,
    sender: Arc<Sender>,
}

/// Runs both lanes' workers and the housekeeping loops until `shutdown` is
/// cancelled, or until a lane stops by itself (which stops the other: the
/// process exits and its supervisor restarts it, rather than running half
/// a sender).
pub async fn run_workers(
    store: Store,
    sender: Arc<Sender>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> AppResult<()> {
    let instance = format!("{}-{}", std::process::id(), ulid::Ulid::new());
    let lanes: Vec<_> = Lane::ALL
        .iter()
        .map(|&lane| {
            let worker = LaneWorker {
                lane,
                name: format!("{}-{instance}", lane.queue()),
                concurrency: settings.concurrency(lane),
                settings: settings.clone(),
                store: store.clone(),
                sender: sender.clone(),
            };
            spawn_lane(worker, shutdown.clone())
        })
        .collect();
    let pruner = housekeeping::spawn(&store, &sender, &settings, &shutdown);
    let result = wait_for_lanes(lanes, &sender, settings.drain, &shutdown).await;
    shutdown.cancel();
    let _ = pruner.await;
    result
}

/// apalis' worker future is Send in practice but rustc cannot prove it
/// through its higher-ranked bounds, so it cannot go to tokio::spawn; it is
/// driven on a blocking-pool thread instead. Its jobs are still spawned onto
/// the runtime (`parallelize`), so they use every core.
fn spawn_lane(worker: LaneWorker, shutdown: CancellationToken) -> JoinHandle<Result<(), String>> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(lane_loop(worker, shutdown)))
}

/// Runs a lane's worker; one whose backend failed (database unreachable, a
/// failed heartbeat) is rebuilt after a pause, under a new name, and its
/// jobs are taken over as orphans. Logged once per outage, not per retry.
async fn lane_loop(worker: LaneWorker, shutdown: CancellationToken) -> Result<(), String> {
    let mut generation = 0u32;
    let mut pause = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = run_once(&worker, generation, shutdown.clone()) => r,
            // Dropping apalis' worker future rolls back any transaction it
            // still holds open (see `settled`).
            _ = settled(&worker, &shutdown) => {
                tracing::info!(lane = %worker.name, "delivery worker had not finished after shutdown; dropped");
                return Ok(());
            }
        };
        if shutdown.is_cancelled() {
            return Ok(());
        }
        // A worker that ran a while before failing starts a new outage.
        if started.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_secs(1);
        }
        if pause == Duration::from_secs(1) {
            tracing::error!(lane = %worker.name, error = ?result.err(), "delivery worker stopped; restarting");
        }
        generation += 1;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

/// Resolves once shutdown is asked for and the lane is done: no attempt in
/// flight for a short grace, or `drain` at the latest. apalis' worker future
/// can outlive its own "stopped" with a heartbeat or fetch transaction
/// begun but never committed; on SQLite that holds the one writer
/// connection (and before that, the write lock: every other writer waited
/// out its 30 s busy timeout and failed with `database is locked`, the
/// bench's flake, issue 17). The lane drops the future at this point
/// instead of leaving it running.
async fn settled(worker: &LaneWorker, shutdown: &CancellationToken) {
    const GRACE: Duration = Duration::from_secs(2);
    shutdown.cancelled().await;
    let deadline = Instant::now() + worker.settings.drain;
    let mut idle_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if worker.sender.in_flight() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= GRACE {
                return;
            }
        } else {
            idle_since = None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One run of a lane's worker on the store's backend, until it stops.
///
/// Woken by this process's commits, by other processes' inserts (Postgres
/// NOTIFY, see `store::jobs::relay_inserts`), and polled every
/// `poll_interval` for jobs that came due. The builder chain is written once
/// per backend: apalis' bounds make a function generic over its backends
/// impractical, and the two storages take different config types.
fn run_once(
    w: &LaneWorker,
    generation: u32,
    stop: CancellationToken,
) -> BoxFuture<'static, Result<(), String>> {
    let strategy = Strategy::new()
        .stream(w.store.signal().stream())
        .interval(w.settings.poll_interval);
    let name = format!("{}-{generation}", w.name);
    let heartbeat = Duration::from_secs(2);
    let missed = (w.settings.orphan_after.as_secs() / 2).max(2) as usize;
    let (concurrency, sender) = (w.concurrency, w.sender.clone());
    // `fetch` already marks jobs Queued and owned by this worker; the extra
    // Running update per job (`lock_tasks`) buys nothing.
    match w.store.queue_db() {
        Db::Sqlite(pool) => {
            let config = apalis_sqlite::Config::default()
                .queue(w.lane.queue())
                .batch_size(w.settings.batch_size)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(missed)
                .lock_tasks(false);
            let backend = SqliteStorage::<DeliveryJob>::new(pool)
                .with_config(config)
                .poll_with_strategy(strategy);
            Box::pin(async move {
                WorkerBuilder::new(name)
                    .backend(backend)
                    .concurrency(concurrency)
                    .parallelize(|job| tokio::spawn(job))
                    .data(sender)
                    .build(handle)
                    .run_with_ctx(move |ctx| stop_when_cancelled(ctx, stop.clone()))
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Db::Pg(pool) => {
            let config = apalis_postgres::Config::default()
                .queue(w.lane.queue())
                .batch_size(w.settings.batch_size)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(missed)
                .lock_tasks(false);
            let backend = PostgresStorage::<DeliveryJob>::new(pool)
                .with_config(config)
                .poll_with_strategy(strategy);
            Box::pin(async move {
                WorkerBuilder::new(name)
                    .backend(backend)
                    .concurrency(concurrency)
                    .parallelize(|job| tokio::spawn(job))
                    .data(sender)
                    .build(handle)
                    .run_with_ctx(move |ctx| stop_when_cancelled(ctx, stop.clone()))
                    .await
                    .map_err(|e| e.to_string())
            })
        }
    }
}

/// Stops the worker once `stop` is cancelled. apalis refuses `stop` before
/// the worker has started; it is asked again until it takes, or the worker
/// would never learn to stop.
async fn stop_when_cancelled(
    ctx: WorkerContext,
    stop: CancellationToken,
) -> Result<(), WorkerError> {
    stop.cancelled().await;
    while ctx.stop().is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits for the lanes. Once shutdown is asked for, running attempts get
/// `drain` to finish; a lane that has not stopped by then is left behind
/// (its jobs are taken over as orphans), so a stop can never hang.
async fn wait_for_lanes(
    lanes: Vec<JoinHandle<Result<(), String>>>,
    sender: &Sender,
    drain: Duration,
    shutdown: &CancellationToken,
) -> AppResult<()> {
    let mut result = Ok(());
    let mut lanes: futures::stream::FuturesUnordered<_> = lanes.into_iter().collect();
    loop {
        let joined = if shutdown.is_cancelled() {
            // Each lane drops its worker by `drain` (`settled`); this is
            // the backstop.
            match tokio::time::timeout(drain + Duration::from_secs(5), lanes.next()).await {
                Ok(j) => j,
                Err(_) => {
                    tracing::warn!(
                        ?drain,
                        handlers_in_flight = sender.in_flight(),
                        "delivery workers did not stop in time; leaving them"
                    );
                    break;
                }
            }
        } else {
            tokio::select! {
                j = lanes.next() => j,
                _ = shutdown.cancelled() => continue,
            }
        };
        let Some(joined) = joined else { break };
        let r = match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AppError::internal(format!("delivery worker stopped: {e}"))),
            Err(e) => Err(AppError::internal(format!("delivery worker panicked: {e}"))),
        };
        shutdown.cancel();
        if r.is_err() && result.is_ok() {
            result = r;
        }
    }
    result
}

/// The apalis handler: one job, one attempt.
async fn handle(
    job: DeliveryJob,
    task_id: TaskId,
    sender: Data<Arc<Sender>>,
) -> Result<(), BoxDynError> {
    sender
        .handle(job, Some(task_id.to_string()))
        .await
        .map_err(|e| Box::new(e) as BoxDynError)
}
