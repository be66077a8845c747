//! Figures for the console's overview: attempts per time bucket (from the
//! per-minute counts the outcome writer keeps), the event→2xx latency of
//! recent deliveries, endpoints in trouble. The cost follows the window or
//! the sample, not the table.

use super::sql::{query, Sql};
use super::Store;
use crate::error::AppResult;
use crate::ids::MerchantId;

/// Attempts since `$1` in buckets of `$2` ms: (bucket start ms, succeeded,
/// failed), optionally of one merchant, from the per-minute counts.
const ATTEMPTS_BY_BUCKET: Sql = Sql::both(
    "SELECT (minute / $2) * $2 AS bucket, CAST(SUM(succeeded) AS BIGINT), \
     CAST(SUM(failed) AS BIGINT) FROM attempt_stats \
     WHERE minute >= $1 AND ($3 IS NULL OR merchant_id = $3) GROUP BY bucket ORDER BY bucket",
);

pub async fn attempts_by_bucket(
    store: &Store,
    since: i64,
    bucket_ms: i64,
    merchant: Option<&MerchantId>,
) -> AppResult<Vec<(i64, i64, i64)>> {
    Ok(query(ATTEMPTS_BY_BUCKET)
        .bind(since / 60_000 * 60_000)
        .bind(bucket_ms)
        .bind(merchant)
        .fetch_all(store.db())
        .await?)
}

const FORGET: Sql = Sql::both("DELETE FROM attempt_stats WHERE minute < $1");
const FORGET_SAMPLES: Sql = Sql::both("DELETE FROM queue_samples WHERE minute < $1");

/// Forgets per-minute counts and samples older than `before_ms` (retention).
pub async fn forget(store: &Store, before_ms: i64) -> AppResult<u64> {
    let n = query(FORGET)
        .bind(before_ms)
        .execute(store.write_db())
        .await?;
    Ok(n + query(FORGET_SAMPLES)
        .bind(before_ms)
        .execute(store.write_db())
        .await?)
}

const SAMPLE: Sql = Sql::both(
    "INSERT INTO queue_samples (minute, due, scheduled, dlq_open) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (minute) DO NOTHING",
);

/// Records this minute's queue depth and open dead letters (once a minute,
/// whichever process comes first).
pub async fn sample_queue(store: &Store, now: i64) -> AppResult<()> {
    let (due, scheduled) = super::jobs::depth(store.db()).await?;
    let dlq_open = super::dead_letters::count_open(store).await?;
    query(SAMPLE)
        .bind(now / 60_000 * 60_000)
        .bind(due)
        .bind(scheduled)
        .bind(dlq_open)
        .execute(store.write_db())
        .await?;
    Ok(())
}

/// The samples since `$1`, the largest of each `$2`-ms bucket: (bucket,
/// due, scheduled, open dead letters).
const SAMPLES: Sql = Sql::both(
    "SELECT (minute / $2) * $2 AS bucket, MAX(due), MAX(scheduled), MAX(dlq_open) \
     FROM queue_samples WHERE minute >= $1 GROUP BY bucket ORDER BY bucket",
);

pub async fn queue_samples(
    store: &Store,
    since: i64,
    bucket_ms: i64,
) -> AppResult<Vec<(i64, i64, i64, i64)>> {
    Ok(query(SAMPLES)
        .bind(since / 60_000 * 60_000)
        .bind(bucket_ms)
        .fetch_all(store.db())
        .await?)
}

/// How many recent deliveries the latency figures sample at most.
pub const LATENCY_SAMPLE: i64 = 2_000;
/// Deliveries read per page while looking for the sample, and at most how
/// many pages (a backlog of pending deliveries is skipped page by page).
const LATENCY_PAGE: i64 = 5_000;
const LATENCY_PAGES: usize = 20;

/// One page of the window's deliveries, newest first (`created_at` in
/// [$1, $2)), and each one's event→completion time if it succeeded. The page
/// is taken on `deliveries_created` by the time range alone, whose size
/// Postgres reads off the index itself even with stale statistics: a status
/// or id test beside it made it guess a few thousand rows and sort the
/// whole window (0.2–2 s at 1,000,000 rows).
const LATENCY_PAGE_ALL: Sql = Sql::both(
    "SELECT d.created_at, CASE WHEN d.status = 'succeeded' \
     THEN d.completed_at - e.created_at END FROM \
     (SELECT event_id, status, created_at, completed_at FROM deliveries \
      WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at DESC LIMIT $3) d \
     JOIN events e ON e.id = d.event_id ORDER BY d.created_at DESC",
);

/// The first page: the same with no upper bound (a two-sided range made
/// Postgres fall back to a fixed guess of its size).
const LATENCY_FIRST_PAGE: Sql = Sql::both(
    "SELECT d.created_at, CASE WHEN d.status = 'succeeded' \
     THEN d.completed_at - e.created_at END FROM \
     (SELECT event_id, status, created_at, completed_at FROM deliveries \
      WHERE created_at >= $1 ORDER BY created_at DESC LIMIT $2) d \
     JOIN events e ON e.id = d.event_id ORDER BY d.created_at DESC",
);

/// One merchant's: walks `deliveries_created` newest first; the status and
/// merchant tests are kept off their indexes (`+`, `|| ''`), which would
/// otherwise be chosen and sort every succeeded row of the merchant.
const LATENCIES_OF: Sql = Sql::each(
    "SELECT d.completed_at - e.created_at FROM deliveries d JOIN events e ON e.id = d.event_id \
     WHERE d.created_at >= $1 AND +d.status = 'succeeded' AND d.completed_at IS NOT NULL \
     AND +d.merchant_id = $2 ORDER BY d.created_at DESC LIMIT $3",
    "SELECT d.completed_at - e.created_at FROM deliveries d JOIN events e ON e.id = d.event_id \
     WHERE d.created_at >= $1 AND (d.status || '') = 'succeeded' AND d.completed_at IS NOT NULL \
     AND (d.merchant_id || '') = $2 ORDER BY d.created_at DESC LIMIT $3",
);

/// Event→2xx times (ms) of deliveries created since `since`, sorted: of
/// the whole system, the newest [`LATENCY_SAMPLE`] succeeded ones found in
/// at most `LATENCY_PAGES` pages of the window's newest deliveries (a page
/// goes on below the last one's oldest time, so a few rows that share it
/// may be skipped: a sample); of one merchant, its newest
/// [`LATENCY_SAMPLE`] succeeded ones.
pub async fn latencies(
    store: &Store,
    since: i64,
    merchant: Option<&MerchantId>,
) -> AppResult<Vec<i64>> {
    let mut v: Vec<i64> = match merchant {
        Some(m) => {
            query(LATENCIES_OF)
                .bind(since)
                .bind(m)
                .bind(LATENCY_SAMPLE)
                .scalars(store.db())
                .await?
        }
        None => newest_succeeded(store, since).await?,
    };
    v.sort_unstable();
    Ok(v)
}

/// The whole system's sample, newest first, page by page.
async fn newest_succeeded(store: &Store, since: i64) -> AppResult<Vec<i64>> {
    let mut v = Vec::new();
    let mut below = None;
    for _ in 0..LATENCY_PAGES {
        let page: Vec<(i64, Option<i64>)> = match below {
            None => query(LATENCY_FIRST_PAGE).bind(since).bind(LATENCY_PAGE),
            Some(b) => query(LATENCY_PAGE_ALL)
                .bind(since)
                .bind(b)
                .bind(LATENCY_PAGE),
        }
        .fetch_all(store.db())
        .await?;
        let full = page.len() as i64 == LATENCY_PAGE;
        let Some((oldest, _)) = page.last() else {
            break;
        };
        below = Some(*oldest);
        v.extend(page.iter().filter_map(|(_, ms)| *ms));
        if v.len() as i64 >= LATENCY_SAMPLE || !full {
            break;
        }
    }
    v.truncate(LATENCY_SAMPLE as usize);
    Ok(v)
}

/// The value at quantile `q` (0–1) of sorted `v`.
pub fn quantile(v: &[i64], q: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i).copied()
}

const PENDING_OF: Sql = Sql::both(
    "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND ($1 IS NULL OR merchant_id = $1)",
);

/// Deliveries not finished yet (of one merchant).
pub async fn pending(store: &Store, merchant: Option<&MerchantId>) -> AppResult<i64> {
    Ok(query(PENDING_OF).bind(merchant).scalar(store.db()).await?)
}

/// An endpoint that needs a look: disabled, or its URL failing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Trouble {
    pub id: crate::ids::EndpointId,
    pub merchant_id: MerchantId,
    pub url: String,
    pub status: String,
    pub disabled_reason: Option<String>,
}

const DISABLED: Sql = Sql::both(
    "SELECT id, merchant_id, url, status, disabled_reason FROM endpoints \
     WHERE status = 'disabled' AND deleted_at IS NULL AND id <> 'ep_operator' \
     AND ($1 IS NULL OR merchant_id = $1) ORDER BY id LIMIT 50",
);

pub async fn disabled_endpoints(
    store: &Store,
    merchant: Option<&MerchantId>,
) -> AppResult<Vec<Trouble>> {
    Ok(query(DISABLED).bind(merchant).fetch_all(store.db()).await?)
}

const FAILING_KEYS: Sql = Sql::both(
    "SELECT endpoint, failing_since, failures FROM endpoint_health \
     WHERE failing_since IS NOT NULL ORDER BY failing_since LIMIT 200",
);

/// URL keys failing right now: (key, failing since, failures in a row).
pub async fn failing_keys(store: &Store) -> AppResult<Vec<(String, i64, i64)>> {
    Ok(query(FAILING_KEYS).fetch_all(store.db()).await?)
}
