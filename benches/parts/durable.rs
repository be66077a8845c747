//! The durable ceiling: what durable delivery can reach on this machine
//! with no queue at all. The same receiver; each delivery's body signed
//! (Standard Webhooks) and POSTed; each outcome planned by payhook's own
//! outcome policy and committed by `store::outcomes::write` in set-based
//! batches (attempt row, delivery state, endpoint health, per-minute
//! counts), the request slots shaped as the sender's. What is left out is
//! exactly what the pipeline adds: the queue (fetch, ack, heartbeat), the
//! attempt-context load, the governor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use payhook::delivery::batcher::Batcher;
use payhook::delivery::outcome::{self, Finished, HealthRules, Next, Outcome};
use payhook::delivery::signer;
use payhook::ids::{DeliveryId, MerchantId};
use payhook::store::outcomes::AttemptRecord;
use payhook::store::{query, Sql, Store};
use tokio::sync::Semaphore;

/// Every pending delivery of `merchant`, with its event's id and body.
const PENDING: Sql = Sql::both(
    "SELECT d.id, e.id, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id \
     WHERE d.merchant_id = $1 AND d.status = 'pending' ORDER BY d.id",
);

/// The queue jobs of those deliveries: the ceiling runs without the queue.
const DROP_JOBS: Sql = Sql::each("DELETE FROM Jobs", "DELETE FROM apalis.jobs");

/// Delivers every pending delivery of `merchant` (which must have no
/// worker running) to `url`; returns deliveries/s.
pub async fn ceiling(
    store: &Store,
    cfg: &payhook::config::Config,
    merchant: &MerchantId,
    url: &str,
) -> (f64, usize) {
    query(DROP_JOBS).execute(store.write_db()).await.unwrap();
    let rows: Vec<(String, String, String)> = query(PENDING)
        .bind(merchant.as_str())
        .fetch_all(store.db())
        .await
        .unwrap();
    let n = rows.len();
    let rows = Arc::new(rows);
    let rules = HealthRules::of(&cfg.circuit);
    let writer_store = store.clone();
    let writer = Batcher::spawn(
        512,
        store.writer_connections(),
        move |batch: Vec<Finished>| {
            let store = writer_store.clone();
            async move {
                let (plan, _) = outcome::plan(&batch, payhook::time::now_ms(), rules);
                payhook::store::outcomes::write(&store, &plan)
                    .await
                    .unwrap();
                batch.iter().map(|_| Ok(())).collect()
            }
        },
    );
    let key = signer::standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let concurrency = cfg.delivery.concurrency as usize;
    let slots = Arc::new(Semaphore::new(concurrency));
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    // As the sender: more tasks than request slots, so waiting for a commit
    // holds no slot.
    for _ in 0..concurrency * 8 {
        let (rows, next, slots, client, writer, key, url) = (
            rows.clone(),
            next.clone(),
            slots.clone(),
            client.clone(),
            writer.clone(),
            key.clone(),
            url.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((delivery, event, body)) = rows.get(i) else {
                    break;
                };
                let slot = slots.acquire().await.unwrap();
                let started = payhook::time::now_ms();
                let t = Instant::now();
                let ts = started / 1000;
                let sig =
                    signer::standard_header(std::slice::from_ref(&key), event, ts, body.as_bytes());
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", event.as_str())
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", sig)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                drop(slot);
                let record = AttemptRecord {
                    attempt: 1,
                    started_at: started,
                    duration_ms: t.elapsed().as_millis() as i64,
                    status_code: Some(i64::from(status)),
                    error_kind: None,
                    error: None,
                    response_body: Some(text),
                };
                let outcome = Outcome::Attempted {
                    delivery_id: DeliveryId::from(delivery.as_str()),
                    record,
                    next: Next::Succeeded,
                };
                writer
                    .call(Finished {
                        job_id: None,
                        outcome,
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (n as f64 / start.elapsed().as_secs_f64(), n)
}
