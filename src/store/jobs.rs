//! The queue's tables (apalis'): SQLite `Jobs`/`Workers` (times in unix
//! seconds), Postgres `apalis.jobs`/`apalis.workers` (timestamptz). Every
//! statement payhook runs on them is here, both spellings side by side:
//! push, finish, cancel, park, wake, prune, depth, live processes. apalis'
//! own fetch/ack/heartbeat statements run inside its workers
//! (`delivery::workers`); payhook's changes to its tables are migrations.
//!
//! On SQLite a job's delivery is found through the expression index
//! `payhook_jobs_delivery` (`CAST(job AS TEXT) ->> 'delivery_id'`). The id
//! it is compared with is written `+d.id`: a bare column lends its TEXT
//! affinity to the comparison, and the planner then scans every job instead
//! of using the index (99 s for the reconciler at 300,000 pending).

use std::sync::Arc;

use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::sql::{id_rows, json_rows, query, Db, Sql, Tx};
use crate::domain::Lane;
use crate::error::AppResult;
use crate::ids::DeliveryId;

/// One job = one delivery attempt (the job's JSON payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub delivery_id: DeliveryId,
    /// 1-based number of the attempt this job makes.
    pub attempt: i64,
}

/// A job to queue: the attempt, when it is due (unix ms), its lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub job: DeliveryJob,
    pub run_at_ms: i64,
    pub lane: Lane,
}

impl NewJob {
    /// The first attempt of a new delivery, due at `now`.
    pub fn first(delivery_id: &DeliveryId, now: i64) -> NewJob {
        NewJob {
            job: DeliveryJob {
                delivery_id: delivery_id.clone(),
                attempt: 1,
            },
            run_at_ms: now,
            lane: Lane::First,
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

    /// A stream that yields once per wake-up (a worker's poll trigger).
    pub fn stream(&self) -> impl Stream<Item = ()> + Unpin + Send + Sync + 'static {
        let notify = self.0.clone();
        Box::pin(futures::stream::unfold(notify, |n| async move {
            n.notified().await;
            Some(((), n))
        }))
    }
}

/// Creates apalis' tables with apalis' own migrations. (Not
/// `SqliteStorage::setup`, which would also switch one connection to
/// `synchronous = OFF`.)
pub(super) async fn create_queue_tables(db: &Db) -> AppResult<()> {
    match db {
        Db::Sqlite(pool) => SqliteStorage::<()>::migrations().run(pool).await?,
        Db::Pg(pool) => PostgresStorage::<()>::migrations().run(pool).await?,
    }
    Ok(())
}

/// The rows are exactly what apalis' own push writes (JSON args, status
/// `Pending`), one multi-row insert instead of an insert per job. On
/// Postgres each job also carries its delivery's id, endpoint and merchant
/// in `metadata` (see migration 0004).
const PUSH: Sql = Sql::each(
    "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata) \
     SELECT CAST(value ->> 'job' AS BLOB), value ->> 'id', value ->> 'queue', 'Pending', 0, 25, \
     value ->> 'run_at', 0, '{}' FROM json_each($1)",
    "INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata) \
     SELECT convert_to(j.value ->> 'job', 'UTF8'), j.value ->> 'id', j.value ->> 'queue', 'Pending', 0, 25, \
     to_timestamp(CAST(j.value ->> 'run_at' AS BIGINT)), 0, \
     hstore(ARRAY['delivery_id', 'endpoint', 'merchant_id'], ARRAY[d.id, d.endpoint, d.merchant_id]) \
     FROM payhook_json_rows($1::jsonb) AS j CROSS JOIN LATERAL \
     (SELECT id, endpoint, merchant_id FROM deliveries WHERE id = j.value ->> 'delivery') AS d",
);

/// Queues attempts in the caller's transaction with one statement. The
/// queue schedules in whole seconds: a future `run_at_ms` is rounded up
/// (never early), a due one down (picked at once).
pub async fn push_many(tx: &mut Tx, jobs: &[NewJob]) -> AppResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = crate::time::now_ms();
    let mut rows = Vec::with_capacity(jobs.len());
    for j in jobs {
        let run_at_ms = j.run_at_ms.max(0);
        let run_at = if run_at_ms <= now {
            run_at_ms / 1000
        } else {
            (run_at_ms as u64).div_ceil(1000) as i64
        };
        rows.push(serde_json::json!({
            "job": json_rows(&j.job)?,
            "delivery": j.job.delivery_id,
            "id": ulid::Ulid::new().to_string(),
            "queue": j.lane.queue(),
            "run_at": run_at,
        }));
    }
    query(PUSH).bind(json_rows(&rows)?).execute(tx).await?;
    Ok(())
}

const FINISH: Sql = Sql::each(
    "DELETE FROM Jobs WHERE id IN (SELECT value ->> 'id' FROM json_each($1))",
    // A primary-key probe per id whatever the statistics say (migration 0004).
    "SELECT apalis.payhook_finish_jobs($1::jsonb)",
);

/// Removes finished jobs, inside the transaction that records their
/// outcomes. (apalis' own ack then finds nothing to update.) Keeping only
/// unfinished jobs in the table keeps fetch and ack cheap under a backlog,
/// and a crash after the commit cannot run a finished job again.
pub async fn finish_many(tx: &mut Tx, job_ids: &[&str]) -> AppResult<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    query(FINISH).bind(id_rows(job_ids)).execute(tx).await?;
    Ok(())
}

const CANCEL: Sql = Sql::each(
    "DELETE FROM Jobs WHERE status IN ('Pending', 'Failed') AND job_type IN ($2, $3) \
     AND CAST(job AS TEXT) ->> 'delivery_id' IN (SELECT value ->> 'id' FROM json_each($1))",
    "DELETE FROM apalis.jobs WHERE status IN ('Pending', 'Failed') AND job_type IN ($2, $3) \
     AND metadata -> 'delivery_id' = ANY(ARRAY(SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)))",
);

/// Removes the waiting jobs of deliveries that were settled outside the
/// sender (dead-lettered by an endpoint disable). A job already running
/// finds its delivery settled and records nothing.
pub async fn cancel_for_deliveries(tx: &mut Tx, delivery_ids: &[DeliveryId]) -> AppResult<()> {
    if delivery_ids.is_empty() {
        return Ok(());
    }
    query(CANCEL)
        .bind(id_rows(delivery_ids))
        .bind(Lane::First.queue())
        .bind(Lane::Retry.queue())
        .execute(tx)
        .await?;
    Ok(())
}

const PARK: Sql = Sql::each(
    "UPDATE Jobs INDEXED BY payhook_jobs_delivery SET run_at = $2 WHERE status = 'Pending' \
     AND job_type IN ($3, $4) AND run_at < $2 AND CAST(job AS TEXT) ->> 'delivery_id' IN \
     (SELECT +id FROM deliveries WHERE endpoint = $1 AND status = 'pending')",
    "SELECT apalis.payhook_park_endpoint($1, $2, $3, $4)",
);

/// Holds every waiting job of `endpoint`'s pending deliveries until
/// `until_ms` (never brings one earlier). Jobs another transaction holds
/// are skipped, not waited for.
pub async fn park_endpoint(db: &Db, endpoint: &str, until_ms: i64) -> AppResult<()> {
    let until = (until_ms.max(0) as u64).div_ceil(1000) as i64;
    query(PARK)
        .bind(endpoint)
        .bind(until)
        .bind(Lane::First.queue())
        .bind(Lane::Retry.queue())
        .execute(db)
        .await?;
    Ok(())
}

const MAKE_DUE_FOR_ENDPOINT: Sql = Sql::each(
    "UPDATE Jobs INDEXED BY payhook_jobs_delivery SET run_at = CAST(strftime('%s', 'now') AS INTEGER) \
     WHERE status = 'Pending' AND job_type IN ($2, $3) \
     AND CAST(job AS TEXT) ->> 'delivery_id' IN \
     (SELECT +id FROM deliveries WHERE endpoint_id = $1 AND status = 'pending')",
    "UPDATE apalis.jobs SET run_at = now() \
     WHERE status = 'Pending' AND job_type IN ($2, $3) AND metadata -> 'delivery_id' = ANY(ARRAY( \
     SELECT id FROM deliveries WHERE endpoint_id = $1 AND status = 'pending'))",
);

/// Makes the queued jobs of an endpoint's pending deliveries due now (after
/// `endpoint enable`, so they do not wait out their deferral).
pub async fn make_due_for_endpoint(
    tx: &mut Tx,
    endpoint_id: &crate::ids::EndpointId,
) -> AppResult<()> {
    query(MAKE_DUE_FOR_ENDPOINT)
        .bind(endpoint_id)
        .bind(Lane::First.queue())
        .bind(Lane::Retry.queue())
        .execute(tx)
        .await?;
    Ok(())
}

const PRUNE_DONE: Sql = Sql::each(
    "DELETE FROM Jobs WHERE (status IN ('Done', 'Killed') \
     OR (status = 'Failed' AND attempts >= max_attempts)) AND done_at IS NOT NULL \
     AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - 60",
    "DELETE FROM apalis.jobs WHERE (status IN ('Done', 'Killed') \
     OR (status = 'Failed' AND attempts >= max_attempts)) AND done_at IS NOT NULL \
     AND done_at < now() - interval '60 seconds'",
);

const PRUNE_WORKERS: Sql = Sql::each(
    "DELETE FROM Workers WHERE last_seen < CAST(strftime('%s', 'now') AS INTEGER) - 3600 \
     AND id NOT IN (SELECT lock_by FROM Jobs WHERE lock_by IS NOT NULL)",
    "DELETE FROM apalis.workers WHERE last_seen < now() - interval '1 hour' \
     AND id NOT IN (SELECT lock_by FROM apalis.jobs WHERE lock_by IS NOT NULL)",
);

/// Deletes jobs that finished without an outcome write (stale re-runs,
/// acked by apalis; jobs apalis gave up on) a minute after, and workers
/// gone for an hour. The
/// `deliveries` and `delivery_attempts` tables are the record; the queue is
/// only a queue. Returns the jobs deleted.
pub async fn prune(db: &Db) -> AppResult<u64> {
    let done = query(PRUNE_DONE).execute(db).await?;
    query(PRUNE_WORKERS).execute(db).await?;
    Ok(done)
}

const DEPTH: Sql = Sql::each(
    "SELECT COALESCE(SUM(CASE WHEN run_at <= CAST(strftime('%s', 'now') AS INTEGER) THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN run_at > CAST(strftime('%s', 'now') AS INTEGER) THEN 1 ELSE 0 END), 0) \
     FROM Jobs WHERE job_type IN ($1, $2) AND status IN ('Pending', 'Failed')",
    "SELECT COUNT(*) FILTER (WHERE run_at <= now()), COUNT(*) FILTER (WHERE run_at > now()) \
     FROM apalis.jobs WHERE job_type IN ($1, $2) AND status IN ('Pending', 'Failed')",
);

/// Queue depth: (due now, scheduled for later) unfinished jobs.
pub async fn depth(db: &Db) -> AppResult<(i64, i64)> {
    Ok(query(DEPTH)
        .bind(Lane::First.queue())
        .bind(Lane::Retry.queue())
        .fetch_one(db)
        .await?)
}

const COUNT: Sql = Sql::each(
    "SELECT COUNT(*) FROM Jobs WHERE job_type = $1 AND status IN ('Pending', 'Failed')",
    "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status IN ('Pending', 'Failed')",
);

/// Jobs waiting to run in one lane (tests, operators).
pub async fn count(db: &Db, lane: Lane) -> AppResult<i64> {
    Ok(query(COUNT).bind(lane.queue()).scalar(db).await?)
}

const LIVE_PROCESSES: Sql = Sql::each(
    "SELECT COUNT(*) FROM Workers WHERE worker_type = $1 \
     AND last_seen > CAST(strftime('%s', 'now') AS INTEGER) - 6",
    "SELECT COUNT(*) FROM apalis.workers WHERE worker_type = $1 \
     AND last_seen > now() - interval '6 seconds'",
);

/// Worker processes that heartbeated in the last 6 s (each runs one
/// first-lane worker, heartbeating every 2 s).
pub async fn live_processes(db: &Db) -> AppResult<i64> {
    Ok(query(LIVE_PROCESSES)
        .bind(Lane::First.queue())
        .scalar(db)
        .await?)
}

/// Postgres only: vacuums the queue table, unless another process is doing
/// it (advisory lock). The table holds only unfinished jobs, so this is
/// cheap; without it the pick query walks ever more dead index entries.
pub async fn vacuum(db: &Db) -> AppResult<()> {
    const LOCK: i64 = 7356120532;
    let Db::Pg(pool) = db else { return Ok(()) };
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
    Ok(())
}

/// Postgres only: wakes this process's workers whenever any process inserts
/// a delivery job (`NOTIFY apalis::job::insert`, migration 0004), so pickup
/// across processes does not wait for the poll. Reconnects by itself after
/// an outage; meanwhile the poll still finds every job. Returns at shutdown.
pub async fn relay_inserts(db: Db, signal: QueueSignal, shutdown: CancellationToken) {
    let Db::Pg(pool) = db else { return };
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    loop {
        let Some(l) = listener.as_mut() else {
            let connect = async {
                let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                l.listen("apalis::job::insert").await?;
                Ok::<_, sqlx::Error>(l)
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                l = connect => listener = l.ok(),
            }
            if listener.is_none() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            continue;
        };
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

const JOBLESS: Sql = Sql::each(
    "SELECT d.id, d.attempts FROM deliveries d \
     WHERE d.status = 'pending' AND d.id > $4 AND d.id <= $5 AND d.next_attempt_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM Jobs j \
     WHERE CAST(j.job AS TEXT) ->> 'delivery_id' = +d.id AND (j.status = 'Pending' \
     OR (j.status = 'Failed' AND j.attempts < j.max_attempts) \
     OR (j.status IN ('Queued', 'Running') AND j.lock_at > $2))) LIMIT $3",
    "SELECT d.id, d.attempts FROM deliveries d \
     WHERE d.status = 'pending' AND d.id > $4 AND d.id <= $5 AND d.next_attempt_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM apalis.jobs j \
     WHERE j.metadata -> 'delivery_id' = d.id AND (j.status = 'Pending' \
     OR (j.status = 'Failed' AND j.attempts < j.max_attempts) \
     OR (j.status IN ('Queued', 'Running') AND j.lock_at > to_timestamp($2)))) LIMIT $3",
);

/// The last id of the next `$2` pending deliveries after `$1` (by id).
const WINDOW_END: Sql = Sql::both(
    "SELECT MAX(id) FROM (SELECT id FROM deliveries WHERE status = 'pending' AND id > $1 \
     ORDER BY id LIMIT $2) w",
);

/// One window of pending deliveries for [`jobless`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// Look at deliveries after this id ("" for the first).
    pub after: String,
    /// At most this many.
    pub size: i64,
}

/// Pending deliveries due before `due_before_ms` that have no live job: none
/// waiting, none retryable, none locked by a worker since `locked_since_ms`.
/// (A job a worker gave up on, or an attempt whose deferral could not be
/// written while the database failed, leaves its delivery so.) Returns
/// each with its attempts so far, and where the next window starts (`None`
/// once the last pending delivery was looked at: start again from the
/// first).
///
/// Only `window.size` pending deliveries are looked at per call: under a
/// backlog every pending delivery has its job, and a query over all of them
/// took 99 s at 300,000 (holding a read snapshot that long, so SQLite's log
/// could not be checkpointed and grew by gigabytes).
pub async fn jobless(
    db: &Db,
    due_before_ms: i64,
    locked_since_ms: i64,
    limit: i64,
    window: &Window,
) -> AppResult<(Vec<(DeliveryId, i64)>, Option<String>)> {
    let end: Option<String> = query(WINDOW_END)
        .bind(window.after.as_str())
        .bind(window.size)
        .scalar(db)
        .await?;
    let Some(end) = end else {
        return Ok((Vec::new(), None));
    };
    let found = query(JOBLESS)
        .bind(due_before_ms)
        .bind(locked_since_ms.div_euclid(1000))
        .bind(limit)
        .bind(window.after.as_str())
        .bind(end.as_str())
        .fetch_all(db)
        .await?;
    Ok((found, Some(end)))
}

const JOBLESS_AMONG: Sql = Sql::each(
    "SELECT d.id, d.attempts FROM deliveries d \
     WHERE d.id IN (SELECT value ->> 'id' FROM json_each($1)) AND d.status = 'pending' \
     AND NOT EXISTS (SELECT 1 FROM Jobs j \
     WHERE CAST(j.job AS TEXT) ->> 'delivery_id' = +d.id AND (j.status = 'Pending' \
     OR (j.status = 'Failed' AND j.attempts < j.max_attempts) \
     OR (j.status IN ('Queued', 'Running') AND j.lock_at > $2)))",
    "SELECT d.id, d.attempts FROM deliveries d \
     WHERE d.id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)) AND d.status = 'pending' \
     AND NOT EXISTS (SELECT 1 FROM apalis.jobs j \
     WHERE j.metadata -> 'delivery_id' = d.id AND (j.status = 'Pending' \
     OR (j.status = 'Failed' AND j.attempts < j.max_attempts) \
     OR (j.status IN ('Queued', 'Running') AND j.lock_at > to_timestamp($2))))",
);

const RECONCILER_LOCK: Sql = Sql::each("SELECT 1", "SELECT pg_advisory_xact_lock(7356120533)");

/// Of `candidates` (found by [`jobless`] outside any transaction), those
/// still pending without a live job, re-read in the write transaction that
/// will queue them: one reconciler at a time (SQLite's write lock, an
/// advisory lock on Postgres), so two processes never queue the same
/// attempt twice.
pub async fn still_jobless(
    tx: &mut Tx,
    candidates: &[DeliveryId],
    locked_since_ms: i64,
) -> AppResult<Vec<(DeliveryId, i64)>> {
    query(RECONCILER_LOCK).execute(&mut *tx).await?;
    Ok(query(JOBLESS_AMONG)
        .bind(id_rows(candidates))
        .bind(locked_since_ms.div_euclid(1000))
        .fetch_all(tx)
        .await?)
}
