//! The scanner: finds payments due for confirmation or expiry and moves them,
//! writing state + event + due delivery + queue job in ONE transaction per
//! batch. Every state change is a conditional update, so a crash at any
//! instant or a second scanner can neither lose an event nor confirm twice.
//!
//! A chain without `rpc_url` uses the head set through the API. A chain with
//! one is scanned by [`node_chain`] against its node ([`node`]), each
//! transaction checked before it is confirmed ([`check`]), with its own task,
//! backoff and outage log ([`watch`]), so a failing node holds up only its
//! own chain.

pub mod check;
pub mod node;
pub mod node_chain;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::node::Node;
use self::node_chain::Failure;
use self::watch::NodeWatch;

use crate::config::{ChainConfig, Config};
use crate::domain::PaymentStatus;
use crate::error::{AppError, AppResult};
use crate::events::EventType;
use crate::ids::{MerchantId, PaymentId};
use crate::money::{classify, Amount};
use crate::store::endpoints::{self, Targets};
use crate::store::events::PaymentEvent;
use crate::store::payments::{self, FinalMove, Payment};
use crate::store::{self, chains, Store, Tx};
use crate::time::now_ms;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub confirmed: u64,
    pub underpaid: u64,
    pub overpaid: u64,
    pub expired: u64,
    /// Payments sent back to `pending` (their transaction left the chain).
    pub reorged: u64,
    /// Chains whose node failed during this scan: nothing on them moved.
    pub node_errors: Vec<NodeFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFailure {
    pub chain: String,
    pub kind: &'static str,
    pub error: String,
}

impl ScanReport {
    fn add(&mut self, status: PaymentStatus, kind: EventType) {
        if kind == EventType::Reorged {
            self.reorged += 1;
            return;
        }
        match status {
            PaymentStatus::Confirmed => self.confirmed += 1,
            PaymentStatus::Underpaid => self.underpaid += 1,
            PaymentStatus::Overpaid => self.overpaid += 1,
            PaymentStatus::Expired => self.expired += 1,
            PaymentStatus::Pending | PaymentStatus::Detected => {}
        }
    }
    pub fn total(&self) -> u64 {
        self.confirmed + self.underpaid + self.overpaid + self.expired + self.reorged
    }
}

/// How long a node may take to answer one request: twice the scan
/// interval, between 2 and 10 seconds.
pub fn node_timeout(interval: Duration) -> Duration {
    (interval * 2).clamp(Duration::from_secs(2), Duration::from_secs(10))
}

/// One full scan (`payhook scan`, `POST /v1/scans`): every configured chain
/// (those with a node are asked once, side by side), then expiries. A node
/// failure is reported in `node_errors`, not as an error of the scan.
pub async fn scan_once(store: &Store, cfg: &Config) -> AppResult<ScanReport> {
    let batch = cfg.scanner.batch_size as i64;
    let timeout = node_timeout(cfg.scanner.interval.0);
    let node_scans = cfg.chains.iter().filter_map(|(chain, c)| {
        let url = c.rpc_url.as_ref()?.expose();
        Some(async move {
            let mut report = ScanReport::default();
            let node = Node::new(url, timeout)?;
            match node_chain::scan(store, chain, c, &node, batch, &mut report)
                .await
            {
                Ok(head) => {
                    crate::metrics::chain_node(chain, true, None);
                    crate::metrics::chain_head(chain, head);
                }
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Node(e)) => {
                    crate::metrics::chain_node(chain, false, Some(e.kind()));
                    tracing::warn!(chain = %chain, node = %node.origin(), kind = e.kind(), error = %e, "chain node failing");
                    report.node_errors.push(NodeFailure {
                        chain: chain.clone(),
                        kind: e.kind(),
                        error: e.to_string(),
                    });
                }
            }
            Ok::<_, AppError>(report)
        })
    });
    let node_reports = futures::future::join_all(node_scans).await;
    let mut report = scan_manual(store, cfg).await?;
    for r in node_reports {
        let r = r?;
        report.confirmed += r.confirmed;
        report.underpaid += r.underpaid;
        report.overpaid += r.overpaid;
        report.reorged += r.reorged;
        report.node_errors.extend(r.node_errors);
    }
    Ok(report)
}

/// Chains without a node (head set through the API), then expiries.
async fn scan_manual(store: &Store, cfg: &Config) -> AppResult<ScanReport> {
    let mut report = ScanReport::default();
    let batch = cfg.scanner.batch_size as i64;
    for (chain, chain_cfg) in &cfg.chains {
        if chain_cfg.rpc_url.is_some() {
            continue;
        }
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
    let Some((head, _)) = chains::head_in(&mut tx, chain).await? else {
        return Ok(0);
    };
    // confirmations = head - block_number + 1 >= required
    let max_block = head - confirmations + 1;
    let due = payments::due_for_confirmation(&mut tx, chain, max_block, None, batch, true).await?;
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
    let finals: Vec<FinalMove> = moves
        .iter()
        .map(|(p, status)| FinalMove::to(&p.id, *status))
        .collect();
    let moved: HashSet<PaymentId> = payments::mark_final_many(&mut tx, &finals, now)
        .await?
        .into_iter()
        .collect();
    let changes: Vec<Change> = moves
        .into_iter()
        .filter(|(p, _)| moved.contains(&p.id))
        .filter_map(|(p, status)| {
            Some(Change {
                payment: Payment {
                    status,
                    confirmed_at: Some(now),
                    ..p.clone()
                },
                kind: EventType::for_payment_status(status)?,
                head: Some(head),
                reason: None,
            })
        })
        .collect();
    let queued = emit(&mut tx, &changes, now).await?;
    changes
        .iter()
        .for_each(|c| report.add(c.payment.status, c.kind));
    store.commit(tx, queued).await?;
    Ok(changes.len())
}

async fn expire_batch(store: &Store, batch: i64, report: &mut ScanReport) -> AppResult<usize> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let due = payments::due_for_expiry(&mut tx, now, batch).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&PaymentId> = due.iter().map(|p| &p.id).collect();
    let moved: HashSet<PaymentId> = payments::mark_expired_many(&mut tx, &ids, now)
        .await?
        .into_iter()
        .collect();
    let changes: Vec<Change> = due
        .into_iter()
        .filter(|p| moved.contains(&p.id))
        .map(|p| Change {
            payment: Payment {
                status: PaymentStatus::Expired,
                ..p
            },
            kind: EventType::Expired,
            head: None,
            reason: None,
        })
        .collect();
    let queued = emit(&mut tx, &changes, now).await?;
    changes
        .iter()
        .for_each(|c| report.add(PaymentStatus::Expired, c.kind));
    store.commit(tx, queued).await?;
    Ok(changes.len())
}

/// A payment that just changed, and the event that says so.
pub(crate) struct Change {
    pub payment: Payment,
    pub kind: EventType,
    /// For the `confirmations` field.
    pub head: Option<i64>,
    /// `payment.reorged`: why.
    pub reason: Option<&'static str>,
}

/// Writes the events of `changes` and their deliveries; true if any
/// delivery was queued.
pub(crate) async fn emit(tx: &mut Tx, changes: &[Change], now: i64) -> AppResult<bool> {
    let mut targets_by_id: HashMap<&MerchantId, Targets> = HashMap::new();
    for c in changes {
        let id = &c.payment.merchant_id;
        if !targets_by_id.contains_key(id) {
            targets_by_id.insert(id, endpoints::targets_in(tx, id).await?);
        }
    }
    let items: Vec<PaymentEvent> = changes
        .iter()
        .map(|c| PaymentEvent {
            targets: &targets_by_id[&c.payment.merchant_id],
            payment: &c.payment,
            kind: c.kind,
            head: c.head,
            reason: c.reason,
        })
        .collect();
    Ok(store::events::emit_for_payments(tx, &items, now).await? > 0)
}

/// Scans every `scanner.interval` until `shutdown`: one task per chain with
/// a node, and this loop for the other chains and expiries. A failed scan is
/// logged once and retried at the next tick.
pub async fn run_loop(store: Store, cfg: Config, shutdown: CancellationToken) {
    let interval: Duration = cfg.scanner.interval.0;
    let mut node_tasks = Vec::new();
    for (chain, c) in &cfg.chains {
        let Some(url) = &c.rpc_url else { continue };
        match Node::new(url.expose(), node_timeout(interval)) {
            Ok(node) => node_tasks.push(tokio::spawn(node_chain_loop(
                store.clone(),
                chain.clone(),
                c.clone(),
                cfg.scanner.batch_size as i64,
                node,
                interval,
                shutdown.clone(),
            ))),
            Err(e) => tracing::error!(chain = %chain, error = %e, "chain not scanned"),
        }
    }
    let mut failing = false;
    loop {
        match scan_manual(&store, &cfg).await {
            Ok(r) => {
                if failing {
                    tracing::info!("scanner recovered");
                    failing = false;
                }
                log_report(None, &r);
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "scan failed; retrying every scanner.interval");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    for t in node_tasks {
        let _ = t.await;
    }
}

fn log_report(chain: Option<&str>, r: &ScanReport) {
    if r.total() > 0 {
        tracing::info!(
            chain = chain.unwrap_or("-"),
            confirmed = r.confirmed,
            underpaid = r.underpaid,
            overpaid = r.overpaid,
            expired = r.expired,
            reorged = r.reorged,
            "scan"
        );
    }
}

/// Scans one chain against its node every `interval`, backing off while the
/// node fails.
async fn node_chain_loop(
    store: Store,
    chain: String,
    chain_cfg: ChainConfig,
    batch: i64,
    node: Node,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut watch = NodeWatch::new(&chain, node.origin(), interval);
    let mut store_failing = false;
    loop {
        if watch.ready() {
            let mut report = ScanReport::default();
            let scan = node_chain::scan(&store, &chain, &chain_cfg, &node, batch, &mut report);
            let result = tokio::select! {
                // Dropping a scan mid-way rolls its open transaction back.
                _ = shutdown.cancelled() => return,
                r = scan => r,
            };
            match result {
                Ok(head) => {
                    watch.succeeded(head);
                    if store_failing {
                        tracing::info!(chain = %chain, "scanner recovered");
                        store_failing = false;
                    }
                }
                Err(Failure::Node(e)) => watch.failed(&e),
                Err(Failure::Store(e)) => {
                    if !store_failing {
                        tracing::error!(chain = %chain, error = %e, "scan failed; retrying every scanner.interval");
                        store_failing = true;
                    }
                }
            }
            log_report(Some(&chain), &report);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
