//! The scanner: finds payments due for confirmation or expiry and moves them,
//! writing state + event + due delivery + queue job in ONE transaction per
//! batch. Every state change is a conditional update, so a crash at any
//! instant or a second scanner can neither lose an event nor confirm twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::AppResult;
use crate::events::EventType;
use crate::money::{classify, Amount};
use crate::store::events::PaymentEvent;
use crate::store::merchants::Merchant;
use crate::store::payments::{self, Payment};
use crate::store::{self, chains, merchants, Store, Tx};
use crate::time::now_ms;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub confirmed: u64,
    pub underpaid: u64,
    pub overpaid: u64,
    pub expired: u64,
}

impl ScanReport {
    fn add(&mut self, status: &str) {
        match status {
            "confirmed" => self.confirmed += 1,
            "underpaid" => self.underpaid += 1,
            "overpaid" => self.overpaid += 1,
            "expired" => self.expired += 1,
            _ => {}
        }
    }
    pub fn total(&self) -> u64 {
        self.confirmed + self.underpaid + self.overpaid + self.expired
    }
}

/// One full scan: every configured chain, then expiries, batch by batch.
pub async fn scan_once(store: &Store, cfg: &Config) -> AppResult<ScanReport> {
    let mut report = ScanReport::default();
    let batch = cfg.scanner.batch_size as i64;
    for (chain, chain_cfg) in &cfg.chains {
        loop {
            let moved = confirm_batch(
                store,
                chain,
                chain_cfg.confirmations as i64,
                batch,
                &mut report,
            )
            .await?;
            if moved < batch as usize {
                break;
            }
        }
    }
    loop {
        let moved = expire_batch(store, batch, &mut report).await?;
        if moved < batch as usize {
            break;
        }
    }
    Ok(report)
}

async fn confirm_batch(
    store: &Store,
    chain: &str,
    confirmations: i64,
    batch: i64,
    report: &mut ScanReport,
) -> AppResult<usize> {
    let mut tx = store.begin_write().await?;
    let Some(head) = chains::head_in(&mut tx, chain).await? else {
        return Ok(0);
    };
    // confirmations = head - block_number + 1 >= required
    let max_block = head - confirmations + 1;
    let due = payments::due_for_confirmation(&mut tx, chain, max_block, batch).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let mut moves = Vec::with_capacity(due.len());
    for p in &due {
        let (Ok(expected), Some(Ok(received))) = (
            Amount::parse("expected_amount", &p.expected_amount),
            p.received_amount
                .as_deref()
                .map(|r| Amount::parse("received_amount", r)),
        ) else {
            tracing::error!(payment_id = %p.id, "stored amount is not a decimal; payment left detected");
            continue;
        };
        moves.push((p, classify(&expected, &received)));
    }
    let ids: Vec<(&str, &str)> = moves.iter().map(|(p, s)| (p.id.as_str(), *s)).collect();
    let moved: HashSet<String> = payments::mark_final_many(&mut tx, &ids, now)
        .await?
        .into_iter()
        .collect();
    let updated: Vec<Payment> = moves
        .into_iter()
        .filter(|(p, _)| moved.contains(&p.id))
        .map(|(p, status)| Payment {
            status: status.to_string(),
            confirmed_at: Some(now),
            ..p.clone()
        })
        .collect();
    let queued = emit(&mut tx, store, &updated, Some(head), now).await?;
    updated.iter().for_each(|p| report.add(&p.status));
    store.commit(tx, queued).await?;
    Ok(updated.len())
}

async fn expire_batch(store: &Store, batch: i64, report: &mut ScanReport) -> AppResult<usize> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let due = payments::due_for_expiry(&mut tx, now, batch).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = due.iter().map(|p| p.id.as_str()).collect();
    let moved: HashSet<String> = payments::mark_expired_many(&mut tx, &ids, now)
        .await?
        .into_iter()
        .collect();
    let updated: Vec<Payment> = due
        .into_iter()
        .filter(|p| moved.contains(&p.id))
        .map(|p| Payment {
            status: "expired".into(),
            ..p
        })
        .collect();
    let queued = emit(&mut tx, store, &updated, None, now).await?;
    updated.iter().for_each(|_| report.add("expired"));
    store.commit(tx, queued).await?;
    Ok(updated.len())
}

/// Writes the events for the payments' new statuses and their deliveries;
/// true if any delivery was queued.
async fn emit(
    tx: &mut Tx,
    store: &Store,
    moved: &[Payment],
    head: Option<i64>,
    now: i64,
) -> AppResult<bool> {
    let mut merchants_by_id: HashMap<&str, Merchant> = HashMap::new();
    for p in moved {
        if !merchants_by_id.contains_key(p.merchant_id.as_str()) {
            merchants_by_id.insert(&p.merchant_id, merchants::get(store, &p.merchant_id).await?);
        }
    }
    let items: Vec<PaymentEvent> = moved
        .iter()
        .filter_map(|p| {
            Some(PaymentEvent {
                merchant: &merchants_by_id[p.merchant_id.as_str()],
                payment: p,
                kind: EventType::for_payment_status(&p.status)?,
                head,
            })
        })
        .collect();
    Ok(store::events::emit_for_payments(tx, &items, now).await? > 0)
}

/// Scans every `scanner.interval` until `shutdown`. A failed scan is logged
/// once and retried at the next tick.
pub async fn run_loop(store: Store, cfg: Config, shutdown: CancellationToken) {
    let interval: Duration = cfg.scanner.interval.0;
    let mut failing = false;
    loop {
        match scan_once(&store, &cfg).await {
            Ok(r) => {
                if failing {
                    tracing::info!("scanner recovered");
                    failing = false;
                }
                if r.total() > 0 {
                    tracing::info!(
                        confirmed = r.confirmed,
                        underpaid = r.underpaid,
                        overpaid = r.overpaid,
                        expired = r.expired,
                        "scan"
                    );
                }
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "scan failed; retrying every scanner.interval");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
