//! apalis wiring: two queues (first attempts, retries) so a retry backlog
//! never starves new events; jobs pushed inside the caller's transaction;
//! workers with explicit names, concurrency, poll interval and batch size;
//! pruning of finished jobs.
//!
//! The backends differ here and only here: SQLite uses apalis-sqlite's
//! `Jobs` table (run_at in unix seconds), Postgres apalis-postgres'
//! `apalis.jobs` (run_at a timestamptz, picked with `FOR UPDATE SKIP
//! LOCKED`, new jobs announced with LISTEN/NOTIFY). Each statement below has
//! its two spellings side by side.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::ext::poll_strategy::Strategy;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::delivery::sender::Sender;
use crate::error::{AppError, AppResult};
use crate::store::{id_list, Db, Store, Tx};
use crate::{on_db, on_tx};

/// One job = one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub delivery_id: String,
    /// 1-based number of the attempt this job makes.
    pub attempt: i64,
}

impl DeliveryJob {
    pub fn first(delivery_id: &str) -> Self {
        DeliveryJob {
            delivery_id: delivery_id.to_string(),
            attempt: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    First,
    Retry,
}

impl Lane {
    pub fn queue(self) -> &'static str {
        match self {
            Lane::First => "payhook.deliveries.first",
            Lane::Retry => "payhook.deliveries.retry",
        }
    }
}

/// Wakes this process's workers right after a commit that queued jobs, so
/// pickup does not wait for the poll interval.
#[derive(Clone, Default)]
pub struct QueueSignal(Arc<Notify>);

impl QueueSignal {
    pub fn wake(&self) {
        self.0.notify_waiters();
    }

    fn stream(&self) -> impl Stream<Item = ()> + Unpin + Send + Sync + 'static {
        let notify = self.0.clone();
        Box::pin(futures::stream::unfold(notify, |n| async move {
            n.notified().await;
            Some(((), n))
        }))
    }
}

/// Creates apalis' tables. (Not `SqliteStorage::setup`, which would also
/// switch one connection to `synchronous = OFF`.)
pub async fn setup(db: &Db) -> AppResult<()> {
    let pool = match db {
        Db::Sqlite(pool) => pool,
        Db::Pg(pool) => {
            PostgresStorage::<()>::migrations().run(pool).await?;
            // Jobs carry their delivery's id, endpoint and merchant in
            // `metadata` (an hstore), so parking an endpoint, cancelling
            // deliveries or waking a merchant's jobs is a one-table query
            // (no join whose plan could go quadratic on stale statistics,
            // no decoding of every job's JSON).
            //
            // apalis' trigger NOTIFYs once per inserted row (a JSON payload
            // built per row: most of the cost of an insert). payhook's
            // listener only needs to know that something was inserted, so
            // the trigger is replaced by one NOTIFY per statement. apalis'
            // pick function joins its picked ids back to the table, a plan
            // that goes quadratic when the statistics are stale (they always
            // are for a queue table: measured 46 ms per fetch of 64 jobs from
            // 5,000); it is replaced by one that updates the ids by primary
            // key. Finished jobs are deleted and a stuck endpoint's jobs
            // parked the same way (`payhook_finish_jobs`,
            // `payhook_park_endpoint`): written as joins, against a table
            // last analyzed empty (so estimated at one row), they were
            // planned as a full scan per row: a delete took up to 900 ms per
            // batch and a park 40 s at a 20,000-job backlog. All three run
            // with sequential scans off. The queue
            // table churns (every job is inserted, locked and deleted), so
            // autovacuum visits it after 1,000 dead rows rather than 20 % of
            // the table. Several processes may start at once: one at a time,
            // by advisory lock.
            let mut tx = pool.begin().await?;
            for sql in [
                "SELECT pg_advisory_xact_lock(7356120531)",
                "CREATE INDEX IF NOT EXISTS payhook_jobs_delivery ON apalis.jobs ((metadata -> 'delivery_id'))",
                "CREATE INDEX IF NOT EXISTS payhook_jobs_endpoint ON apalis.jobs ((metadata -> 'endpoint')) \
                 WHERE status = 'Pending'",
                // Changed only when not yet so: each ALTER takes a table lock
                // that would pause other processes' workers at every start.
                "DO $$ BEGIN \
                 IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'payhook_notify_jobs') THEN \
                   CREATE OR REPLACE FUNCTION apalis.payhook_notify_jobs() RETURNS trigger AS $f$ \
                   BEGIN PERFORM pg_notify('apalis::job::insert', 'payhook.deliveries.*'); RETURN NULL; END; \
                   $f$ LANGUAGE plpgsql; \
                   CREATE TRIGGER payhook_notify_jobs AFTER INSERT ON apalis.jobs \
                   FOR EACH STATEMENT EXECUTE FUNCTION apalis.payhook_notify_jobs(); \
                 END IF; \
                 IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'notify_workers' \
                   AND tgrelid = 'apalis.jobs'::regclass AND tgenabled <> 'D') THEN \
                   ALTER TABLE apalis.jobs DISABLE TRIGGER notify_workers; \
                 END IF; \
                 IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'get_jobs' \
                   AND pronamespace = 'apalis'::regnamespace AND prosrc LIKE '%payhook%') THEN \
                   CREATE OR REPLACE FUNCTION apalis.get_jobs(worker_id TEXT, v_job_type TEXT, \
                     v_job_count INTEGER DEFAULT 5) RETURNS SETOF apalis.jobs LANGUAGE sql VOLATILE \
                     SET enable_seqscan = off AS $f$ \
                     /* payhook: same rows as apalis' get_jobs, but the picked ids are \
                        updated by primary key whatever the table statistics say */ \
                     UPDATE apalis.jobs j SET status = 'Queued', lock_by = worker_id, lock_at = now() \
                     WHERE j.id = ANY(ARRAY( \
                       SELECT id FROM apalis.jobs \
                       WHERE (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)) \
                         AND run_at < now() AND job_type = v_job_type \
                       ORDER BY priority DESC, run_at ASC LIMIT v_job_count FOR UPDATE SKIP LOCKED)) \
                     RETURNING j.*; \
                   $f$; \
                 END IF; \
                 IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = 'apalis.jobs'::regclass \
                   AND reloptions @> ARRAY['autovacuum_vacuum_threshold=1000']) THEN \
                   ALTER TABLE apalis.jobs SET (autovacuum_vacuum_scale_factor = 0.01, \
                     autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02, \
                     autovacuum_vacuum_cost_delay = 0); \
                 END IF; \
                 END $$",
                // payhook's own statements on the queue table, as functions
                // so they can run with sequential scans off (see above).
                "CREATE OR REPLACE FUNCTION apalis.payhook_finish_jobs(ids jsonb) RETURNS void \
                 LANGUAGE sql VOLATILE SET enable_seqscan = off AS $f$ \
                 DELETE FROM apalis.jobs WHERE id = ANY(ARRAY( \
                   SELECT value ->> 'id' FROM jsonb_array_elements(ids))); \
                 $f$",
                "CREATE OR REPLACE FUNCTION apalis.payhook_park_endpoint(v_endpoint text, v_until bigint, \
                   v_first text, v_retry text) RETURNS void \
                 LANGUAGE sql VOLATILE SET enable_seqscan = off AS $f$ \
                 UPDATE apalis.jobs SET run_at = to_timestamp(v_until) WHERE id = ANY(ARRAY( \
                   SELECT id FROM apalis.jobs WHERE metadata -> 'endpoint' = v_endpoint \
                     AND status = 'Pending' AND job_type IN (v_first, v_retry) \
                     AND run_at < to_timestamp(v_until) FOR UPDATE SKIP LOCKED)); \
                 $f$",
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            return Ok(());
        }
    };
    SqliteStorage::<()>::migrations().run(pool).await?;
    // apalis' pick query orders by (priority DESC, run_at, id) within a
    // queue; this index serves it in order instead of sorting every pending
    // job on every fetch (the cost grows with the backlog otherwise).
    sqlx::query(
        "CREATE INDEX IF NOT EXISTS payhook_jobs_pick ON Jobs (job_type, status, priority DESC, run_at, id)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Queues one attempt in the caller's transaction.
pub async fn push(tx: &mut Tx, job: &DeliveryJob, run_at_ms: i64, lane: Lane) -> AppResult<()> {
    push_many(tx, &[(job.clone(), run_at_ms, lane)]).await
}

/// Queues attempts in the caller's transaction with one statement. The
/// rows are exactly what apalis-sqlite's own push writes (JSON args as a
/// BLOB, status `Pending`, default metadata); one multi-row insert instead
/// of its insert per job. The queue schedules in whole seconds: a future
/// `run_at_ms` is rounded up (never early), a due one down (picked at once).
pub async fn push_many(tx: &mut Tx, jobs: &[(DeliveryJob, i64, Lane)]) -> AppResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = crate::time::now_ms();
    let rows: Vec<serde_json::Value> = jobs
        .iter()
        .map(|(job, run_at_ms, lane)| {
            let run_at_ms = (*run_at_ms).max(0);
            let run_at = if run_at_ms <= now {
                run_at_ms / 1000
            } else {
                (run_at_ms as u64).div_ceil(1000) as i64
            };
            serde_json::json!({
                "job": serde_json::to_string(job).unwrap_or_default(),
                "delivery": job.delivery_id,
                "id": ulid::Ulid::new().to_string(),
                "queue": lane.queue(),
                "run_at": run_at,
            })
        })
        .collect();
    let rows = serde_json::Value::Array(rows).to_string();
    on_tx!(tx, |c, pg| {
        let sql = if pg {
            "INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata) \
             SELECT convert_to(j.value ->> 'job', 'UTF8'), j.value ->> 'id', j.value ->> 'queue', 'Pending', 0, 25, \
             to_timestamp(CAST(j.value ->> 'run_at' AS BIGINT)), 0, \
             hstore(ARRAY['delivery_id', 'endpoint', 'merchant_id'], ARRAY[d.id, d.endpoint, d.merchant_id]) \
             FROM payhook_json_rows($1::jsonb) AS j CROSS JOIN LATERAL \
             (SELECT id, endpoint, merchant_id FROM deliveries WHERE id = j.value ->> 'delivery') AS d"
        } else {
            "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata) \
             SELECT CAST(value ->> 'job' AS BLOB), value ->> 'id', value ->> 'queue', 'Pending', 0, 25, \
             value ->> 'run_at', 0, '{}' FROM json_each($1)"
        };
        sqlx::query(sql).bind(rows).execute(c).await.map(|_| ())
    })?;
    Ok(())
}

/// Removes the waiting jobs of deliveries that were settled outside the
/// sender (dead-lettered by an endpoint disable). A job already running
/// finds its delivery settled and records nothing.
pub async fn cancel_for_deliveries(tx: &mut Tx, delivery_ids: &[&str]) -> AppResult<()> {
    if delivery_ids.is_empty() {
        return Ok(());
    }
    on_tx!(tx, |c, pg| {
        let sql = if pg {
            "DELETE FROM apalis.jobs WHERE status IN ('Pending', 'Failed') AND job_type IN ($2, $3) \
             AND metadata -> 'delivery_id' = ANY(ARRAY(SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)))"
        } else {
            "DELETE FROM Jobs WHERE status IN ('Pending', 'Failed') AND job_type IN ($2, $3) \
             AND CAST(job AS TEXT) ->> 'delivery_id' IN (SELECT value ->> 'id' FROM json_each($1))"
        };
        sqlx::query(sql)
            .bind(id_list(delivery_ids))
            .bind(Lane::First.queue())
            .bind(Lane::Retry.queue())
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Holds every waiting job of `endpoint`'s pending deliveries until
/// `until_ms` (never brings one earlier), in a task of its own: parking a
/// large backlog takes a while, and the outcome batch that asked for it (and
/// every outcome behind it) must not wait. Parking is an optimisation: a job
/// it misses, or one another transaction holds at the time (skipped, not
/// waited for), is held back when it runs.
pub fn park_endpoint(store: &Store, endpoint: String, until_ms: i64) {
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = park_now(&store, &endpoint, until_ms).await {
            tracing::debug!(error = %e, "parking an endpoint's queued jobs failed");
        }
    });
}

async fn park_now(store: &Store, endpoint: &str, until_ms: i64) -> AppResult<()> {
    let until = (until_ms.max(0) as u64).div_ceil(1000) as i64;
    on_db!(store.db(), |db, pg| {
        let sql = if pg {
            "SELECT apalis.payhook_park_endpoint($1, $2, $3, $4)"
        } else {
            "UPDATE Jobs SET run_at = $2 WHERE status = 'Pending' AND job_type IN ($3, $4) \
             AND run_at < $2 AND CAST(job AS TEXT) ->> 'delivery_id' IN \
             (SELECT id FROM deliveries WHERE endpoint = $1 AND status = 'pending')"
        };
        sqlx::query(sql)
            .bind(endpoint)
            .bind(until)
            .bind(Lane::First.queue())
            .bind(Lane::Retry.queue())
            .execute(db)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Makes the queued jobs of a merchant's pending deliveries due now (after
/// `merchant enable`, so they do not wait out their deferral).
pub async fn make_due_for_merchant(tx: &mut Tx, merchant_id: &str) -> AppResult<()> {
    on_tx!(tx, |c, pg| {
        let sql = if pg {
            "UPDATE apalis.jobs SET run_at = now() \
             WHERE status = 'Pending' AND job_type IN ($2, $3) AND metadata -> 'merchant_id' = $1"
        } else {
            "UPDATE Jobs SET run_at = CAST(strftime('%s', 'now') AS INTEGER) \
             WHERE status = 'Pending' AND job_type IN ($2, $3) \
             AND CAST(job AS TEXT) ->> 'delivery_id' IN \
             (SELECT id FROM deliveries WHERE merchant_id = $1 AND status = 'pending')"
        };
        sqlx::query(sql)
            .bind(merchant_id)
            .bind(Lane::First.queue())
            .bind(Lane::Retry.queue())
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// A job spends part of its time waiting on the database (its attempt
/// context, its outcome's commit) rather than on the wire; the queue runs
/// this many jobs per request slot so those waits do not leave request
/// slots idle. (Measured on Postgres with 64 requests on the wire: 64 jobs
/// at once drained ~4,400/s, 256 ~6,400/s, 512 ~6,900/s, and isolation
/// beside a black hole went from ~0.5 to ~0.98.)
pub const TASKS_PER_REQUEST_SLOT: usize = 8;

/// Worker settings derived from config.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs each lane runs at once.
    pub first_concurrency: usize,
    pub retry_concurrency: usize,
    /// Requests on the wire at once, per lane (`delivery.concurrency` and a
    /// quarter of it).
    pub first_requests: usize,
    pub retry_requests: usize,
    pub poll_interval: Duration,
    pub batch_size: usize,
    /// A worker silent this long has its jobs handed to others.
    pub orphan_after: Duration,
    /// How long a stop waits for running attempts.
    pub drain: Duration,
}

impl WorkerSettings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let c = cfg.delivery.concurrency as usize;
        // Retries get their own slots (a quarter, at least 1) so a backlog of
        // retries to failing endpoints cannot take the first attempts' slots.
        let retry = (c / 4).max(1);
        WorkerSettings {
            first_concurrency: c * TASKS_PER_REQUEST_SLOT,
            retry_concurrency: retry * TASKS_PER_REQUEST_SLOT,
            first_requests: c,
            retry_requests: retry,
            poll_interval: Duration::from_millis(200),
            batch_size: c.clamp(10, 200),
            // Longer than one attempt can take, so a busy worker is never
            // mistaken for a dead one.
            orphan_after: (cfg.delivery.timeout.0 * 2).max(Duration::from_secs(10)),
            drain: cfg.delivery.timeout.0 + Duration::from_secs(10),
        }
    }
}

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

/// Removes finished jobs, inside the transaction that records their
/// outcomes. (apalis' own ack then finds nothing to update.) Keeping only
/// unfinished jobs in the table keeps fetch and ack cheap under a backlog,
/// and a crash after the commit cannot run a finished job again.
pub async fn finish_many(tx: &mut Tx, job_ids: &[&str]) -> AppResult<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    on_tx!(tx, |c, pg| {
        let sql = if pg {
            // A primary-key probe per id whatever the statistics say (see
            // `payhook_finish_jobs` in `setup`).
            "SELECT apalis.payhook_finish_jobs($1::jsonb)"
        } else {
            "DELETE FROM Jobs WHERE id IN (SELECT value ->> 'id' FROM json_each($1))"
        };
        sqlx::query(sql)
            .bind(id_list(job_ids))
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Runs both lanes' workers until `shutdown` is cancelled.
pub async fn run_workers(
    store: Store,
    sender: Arc<Sender>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> AppResult<()> {
    let instance = format!("{}-{}", std::process::id(), ulid::Ulid::new());
    let mut handles = Vec::new();
    for (lane, concurrency) in [
        (Lane::First, settings.first_concurrency),
        (Lane::Retry, settings.retry_concurrency),
    ] {
        let heartbeat = Duration::from_secs(2);
        let missed = (settings.orphan_after.as_secs() / 2).max(2) as usize;
        // Same settings for both backends' Config types.
        macro_rules! lane_config {
            ($config:ty) => {
                <$config>::default()
                    .queue(lane.queue())
                    .batch_size(settings.batch_size)
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(missed)
                    // `fetch` already marks jobs Queued and owned by this
                    // worker; the extra Running update per job buys nothing.
                    .lock_tasks(false)
            };
        }
        let sqlite_config = lane_config!(apalis_sqlite::Config);
        let pg_config = lane_config!(apalis_postgres::Config);
        let signal = store.signal().clone();
        let db = store.queue_db().clone();
        let sender = sender.clone();
        let poll_interval = settings.poll_interval;
        let name = format!("{}-{instance}", lane.queue());
        let token = shutdown.clone();
        let runtime = tokio::runtime::Handle::current();
        // apalis' worker future is Send in practice but rustc cannot prove it
        // through its higher-ranked bounds, so it cannot go to tokio::spawn;
        // it is driven on a blocking-pool thread instead. Its jobs are still
        // spawned onto the runtime (`parallelize`), so they use every core.
        handles.push(tokio::task::spawn_blocking(move || {
            runtime.block_on(async move {
                // A worker whose backend failed (database unreachable, a
                // failed heartbeat) is rebuilt after a pause, under a new
                // name; its jobs are taken over as orphans. Logged once per
                // outage, not per retry.
                let mut generation = 0u32;
                let mut pause = Duration::from_secs(1);
                loop {
                    // Woken by this process's commits, by other processes'
                    // inserts (Postgres NOTIFY, see `listen_for_jobs`), and
                    // polled every `poll_interval` for jobs that came due.
                    let strategy = Strategy::new()
                        .stream(signal.stream())
                        .interval(poll_interval);
                    let stop = token.clone();
                    let started = std::time::Instant::now();
                    macro_rules! run_lane {
                        ($backend:expr) => {
                            WorkerBuilder::new(format!("{name}-{generation}"))
                                .backend($backend)
                                .concurrency(concurrency)
                                .parallelize(|job| tokio::spawn(job))
                                .data(sender.clone())
                                .build(handle)
                                .run_with_ctx(move |ctx| {
                                    let stop = stop.clone();
                                    async move {
                                        stop.cancelled().await;
                                        // apalis refuses `stop` before the worker
                                        // has started; retry until it takes, or
                                        // the worker would never learn to stop.
                                        while ctx.stop().is_err() {
                                            tokio::time::sleep(Duration::from_millis(20)).await;
                                        }
                                        Ok(())
                                    }
                                })
                                .await
                                .map_err(|e| e.to_string())
                        };
                    }
                    let result = match &db {
                        Db::Sqlite(pool) => run_lane!(SqliteStorage::<DeliveryJob>::new(pool)
                            .with_config(sqlite_config.clone())
                            .poll_with_strategy(strategy)),
                        Db::Pg(pool) => run_lane!(PostgresStorage::<DeliveryJob>::new(pool)
                            .with_config(pg_config.clone())
                            .poll_with_strategy(strategy)),
                    };
                    if token.is_cancelled() {
                        return Ok::<(), String>(());
                    }
                    // A worker that ran a while before failing starts a new outage.
                    if started.elapsed() > Duration::from_secs(60) {
                        pause = Duration::from_secs(1);
                    }
                    if pause == Duration::from_secs(1) {
                        tracing::error!(lane = %name, error = ?result.err(), "delivery worker stopped; restarting");
                    }
                    generation += 1;
                    tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            })
        }));
    }
    let pruner = tokio::spawn(prune_loop(store.clone(), shutdown.clone()));
    if let Db::Pg(pool) = store.db() {
        tokio::spawn(vacuum_loop(pool.clone(), shutdown.clone()));
    }
    tokio::spawn(share_loop(store.clone(), sender.clone(), shutdown.clone()));
    if let Db::Pg(pool) = store.queue_db() {
        tokio::spawn(listen_for_jobs(
            pool.clone(),
            store.signal().clone(),
            shutdown.clone(),
        ));
    }
    let mut result = Ok(());
    let mut lanes: futures::stream::FuturesUnordered<_> = handles.into_iter().collect();
    loop {
        // Once shutdown is asked for, running attempts get `drain` to finish;
        // a lane that has not stopped by then is left behind (its jobs are
        // taken over as orphans), so a stop can never hang.
        let next = futures::StreamExt::next(&mut lanes);
        let joined = if shutdown.is_cancelled() {
            match tokio::time::timeout(settings.drain, next).await {
                Ok(j) => j,
                Err(_) => {
                    tracing::warn!(
                        drain = ?settings.drain,
                        handlers_in_flight = sender.in_flight(),
                        "delivery workers did not stop in time; leaving them"
                    );
                    break;
                }
            }
        } else {
            tokio::select! {
                j = next => j,
                _ = shutdown.cancelled() => continue,
            }
        };
        let Some(joined) = joined else { break };
        let r = match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AppError::internal(format!("delivery worker stopped: {e}"))),
            Err(e) => Err(AppError::internal(format!("delivery worker panicked: {e}"))),
        };
        // Whichever lane stops first stops the other: the process exits and
        // its supervisor restarts it, rather than running half a sender.
        shutdown.cancel();
        if r.is_err() && result.is_ok() {
            result = r;
        }
    }
    shutdown.cancel();
    let _ = pruner.await;
    result
}

/// Postgres: wakes this process's workers when any process inserts a due
/// delivery job (apalis' trigger NOTIFYs `apalis::job::insert`), so pickup
/// across processes does not wait for the poll. The listener reconnects by
/// itself after an outage; meanwhile the poll still finds every job.
async fn listen_for_jobs(pool: sqlx::PgPool, signal: QueueSignal, shutdown: CancellationToken) {
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    loop {
        if listener.is_none() {
            let connect = async {
                let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                l.listen("apalis::job::insert").await?;
                Ok::<_, sqlx::Error>(l)
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                l = connect => match l {
                    Ok(l) => listener = Some(l),
                    Err(_) => {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                },
            }
        }
        let Some(l) = listener.as_mut() else { continue };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            n = l.recv() => match n {
                Ok(n) if n.payload().contains("payhook.deliveries.") => signal.wake(),
                Ok(_) => {}
                Err(_) => listener = None,
            },
        }
    }
}

/// Every 2 s: how many worker processes are alive on this database (each
/// has one first-lane worker heartbeating every 2 s); the sender's rate
/// limits become that many equal shares.
async fn share_loop(store: Store, sender: Arc<Sender>, shutdown: CancellationToken) {
    loop {
        if let Ok(n) = live_processes(&store).await {
            sender.set_rate_share(n.clamp(1, u32::MAX as i64) as u32);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Worker processes that heartbeated in the last 6 s.
pub async fn live_processes(store: &Store) -> AppResult<i64> {
    Ok(on_db!(store.queue_db(), |db, pg| {
        let sql = if pg {
            "SELECT COUNT(*) FROM apalis.workers WHERE worker_type = $1 \
             AND last_seen > now() - interval '6 seconds'"
        } else {
            "SELECT COUNT(*) FROM Workers WHERE worker_type = $1 \
             AND last_seen > CAST(strftime('%s', 'now') AS INTEGER) - 6"
        };
        sqlx::query_scalar(sql)
            .bind(Lane::First.queue())
            .fetch_one(db)
            .await
    })?)
}

/// Jobs that finished without an outcome write (stale re-runs) are left to
/// apalis' ack; they are pruned a minute later. The `deliveries` and
/// `delivery_attempts` tables are the record, the queue is only a queue.
async fn prune_loop(store: Store, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        if let Err(e) = prune(&store).await {
            tracing::warn!(error = %e, "pruning finished queue jobs failed");
        }
    }
}

/// Postgres: every job row is inserted, updated when picked and deleted when
/// done, so the queue table sheds thousands of dead rows a second under
/// load; left to autovacuum (a round a minute at best) the pick query walks
/// ever more dead index entries. One process at a time (advisory lock)
/// vacuums it every 10 s; the table holds only unfinished jobs, so this is
/// cheap.
async fn vacuum_loop(pool: sqlx::PgPool, shutdown: CancellationToken) {
    const LOCK: i64 = 7356120532;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        let vacuum = async {
            let mut conn = pool.acquire().await?;
            let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LOCK)
                .fetch_one(&mut *conn)
                .await?;
            if mine {
                let done = sqlx::query("VACUUM (ANALYZE, TRUNCATE false) apalis.jobs")
                    .execute(&mut *conn)
                    .await;
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(LOCK)
                    .execute(&mut *conn)
                    .await?;
                done?;
            }
            Ok::<_, sqlx::Error>(())
        };
        if let Err(e) = vacuum.await {
            tracing::debug!(error = %e, "vacuuming the queue table failed; next try in 10 s");
        }
    }
}

pub async fn prune(store: &Store) -> AppResult<u64> {
    let done = on_db!(store.db(), |db, pg| {
        let sql = if pg {
            "DELETE FROM apalis.jobs WHERE status IN ('Done', 'Killed') AND done_at IS NOT NULL \
             AND done_at < now() - interval '60 seconds'"
        } else {
            "DELETE FROM Jobs WHERE status IN ('Done', 'Killed') AND done_at IS NOT NULL \
             AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - 60"
        };
        sqlx::query(sql)
            .execute(db)
            .await
            .map(|r| r.rows_affected())
    })?;
    on_db!(store.db(), |db, pg| {
        let sql = if pg {
            "DELETE FROM apalis.workers WHERE last_seen < now() - interval '1 hour' \
             AND id NOT IN (SELECT lock_by FROM apalis.jobs WHERE lock_by IS NOT NULL)"
        } else {
            "DELETE FROM Workers WHERE last_seen < CAST(strftime('%s', 'now') AS INTEGER) - 3600 \
             AND id NOT IN (SELECT lock_by FROM Jobs WHERE lock_by IS NOT NULL)"
        };
        sqlx::query(sql).execute(db).await.map(|_| ())
    })?;
    Ok(done)
}

/// Queue depth: (due now, scheduled for later) unfinished jobs.
pub async fn depth(store: &Store) -> AppResult<(i64, i64)> {
    Ok(on_db!(store.db(), |db, pg| {
        let sql = if pg {
            "SELECT COUNT(*) FILTER (WHERE run_at <= now()), COUNT(*) FILTER (WHERE run_at > now()) \
             FROM apalis.jobs WHERE job_type IN ($1, $2) AND status IN ('Pending', 'Failed')"
        } else {
            "SELECT COALESCE(SUM(CASE WHEN run_at <= CAST(strftime('%s', 'now') AS INTEGER) THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN run_at > CAST(strftime('%s', 'now') AS INTEGER) THEN 1 ELSE 0 END), 0) \
             FROM Jobs WHERE job_type IN ($1, $2) AND status IN ('Pending', 'Failed')"
        };
        sqlx::query_as(sql)
            .bind(Lane::First.queue())
            .bind(Lane::Retry.queue())
            .fetch_one(db)
            .await
    })?)
}

/// Jobs waiting to run in one lane (tests, operators).
pub async fn count(store: &Store, lane: Lane) -> AppResult<i64> {
    Ok(on_db!(store.db(), |db, pg| {
        let sql = if pg {
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status IN ('Pending', 'Failed')"
        } else {
            "SELECT COUNT(*) FROM Jobs WHERE job_type = $1 AND status IN ('Pending', 'Failed')"
        };
        sqlx::query_scalar(sql)
            .bind(lane.queue())
            .fetch_one(db)
            .await
    })?)
}
