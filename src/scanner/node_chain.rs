//! One scan of a chain that has a node (`chains.<name>.rpc_url`): read the
//! head, then walk the payments the head makes due, look their transactions
//! up in batches and apply the verdicts of [`check::judge`] — confirmations,
//! block moves and reopenings with their events — one write transaction per
//! page. The node is asked before the write lock is taken; every update is
//! conditional on the payment still being detected with the same tx_hash,
//! so a concurrent scanner or a new sighting is never overwritten.
//!
//! Any node failure ends the chain's scan before anything else is written
//! (pages already applied were judged on good answers and stay).

use std::collections::HashSet;

use super::check::{self, Verdict};
use super::node::{Node, NodeError};
use super::{emit, Change, ScanReport};
use crate::config::ChainConfig;
use crate::domain::PaymentStatus;
use crate::error::AppError;
use crate::events::EventType;
use crate::ids::PaymentId;
use crate::store::payments::{self, FinalMove, Payment, Sighting};
use crate::store::{chains, Store};
use crate::time::now_ms;

#[derive(Debug)]
pub enum Failure {
    Node(NodeError),
    Store(AppError),
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Failure::Store(e)
    }
}

impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Self {
        Failure::Node(e)
    }
}

/// Scans `chain` against its node; returns the head read.
pub async fn scan(
    store: &Store,
    chain: &str,
    chain_cfg: &ChainConfig,
    node: &Node,
    batch: i64,
    report: &mut ScanReport,
) -> Result<i64, Failure> {
    let confirmations = i64::from(chain_cfg.confirmations);
    let head = node.head().await?;
    if let Some(known) = chains::advance_head(store, chain, head, now_ms()).await? {
        // A little behind (another scan read a newer head first, a node
        // behind a load balancer a block late): nothing to do this time.
        // Further behind than the depth: a node we must not trust now.
        if known - head <= confirmations {
            return Ok(known);
        }
        return Err(NodeError::HeadBackwards { known, got: head }.into());
    }
    // Due by the block stored at detection; the receipt's block decides.
    let max_block = head - confirmations + 1;
    let mut after: Option<(i64, PaymentId)> = None;
    loop {
        // Read outside any write transaction: the node is asked before a
        // lock is taken, and the updates are conditional.
        let mut read = store.begin_read().await?;
        let page = payments::due_for_confirmation(
            &mut read,
            chain,
            max_block,
            after.as_ref().map(|(b, id)| (*b, id)),
            batch,
            false,
        )
        .await?;
        drop(read);
        let Some(last) = page.last() else { break };
        after = Some((last.block_number.unwrap_or(0), last.id.clone()));
        let wanted: Vec<(&str, bool)> = page
            .iter()
            .map(|p| (p.tx_hash.as_deref().unwrap_or_default(), p.token.is_none()))
            .collect();
        let found = node.lookups(&wanted).await?;
        let verdicts: Vec<Verdict> = page
            .iter()
            .zip(&found)
            .map(|(p, f)| {
                let token = p.token.as_deref().and_then(|t| chain_cfg.token(t));
                check::judge(p, f, head, confirmations, token)
            })
            .collect();
        apply(store, &page, &verdicts, head, report).await?;
        if (page.len() as i64) < batch {
            break;
        }
    }
    Ok(head)
}

/// The conditional updates a page's verdicts ask for.
#[derive(Default)]
struct Updates<'a> {
    finals: Vec<FinalMove<'a>>,
    moves: Vec<Sighting<'a>>,
    reopens: Vec<Sighting<'a>>,
}

impl<'a> Updates<'a> {
    fn of(page: &'a [Payment], verdicts: &'a [Verdict]) -> Updates<'a> {
        let mut u = Updates::default();
        for (p, v) in page.iter().zip(verdicts) {
            let tx_hash = p.tx_hash.as_deref().unwrap_or_default();
            let sighting = |block_number| Sighting {
                id: &p.id,
                tx_hash,
                block_number,
                detected_at: p.detected_at,
            };
            match v {
                Verdict::Confirm {
                    status,
                    block,
                    onchain_amount,
                } => u.finals.push(FinalMove {
                    tx_hash: Some(tx_hash),
                    block_number: Some(*block),
                    received_amount: onchain_amount.as_deref(),
                    reported_amount: onchain_amount.as_ref().and(p.received_amount.as_deref()),
                    detected_at: p.detected_at,
                    ..FinalMove::to(&p.id, *status)
                }),
                Verdict::Wait { block } if p.block_number != Some(*block) => {
                    u.moves.push(sighting(*block))
                }
                Verdict::Wait { .. } => {}
                Verdict::Reopen { .. } => {
                    u.reopens.push(sighting(p.block_number.unwrap_or_default()))
                }
            }
        }
        u
    }

    fn is_empty(&self) -> bool {
        self.finals.is_empty() && self.moves.is_empty() && self.reopens.is_empty()
    }
}

/// Applies a page's verdicts in one write transaction, with their events.
async fn apply(
    store: &Store,
    page: &[Payment],
    verdicts: &[Verdict],
    head: i64,
    report: &mut ScanReport,
) -> Result<(), AppError> {
    let now = now_ms();
    let updates = Updates::of(page, verdicts);
    if updates.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    let mut confirmed = HashSet::new();
    if !updates.finals.is_empty() {
        confirmed.extend(payments::mark_final_many(&mut tx, &updates.finals, now).await?);
    }
    if !updates.moves.is_empty() {
        payments::move_blocks_many(&mut tx, &updates.moves, now).await?;
    }
    let mut reopened = HashSet::new();
    if !updates.reopens.is_empty() {
        reopened.extend(payments::reopen_many(&mut tx, &updates.reopens, now).await?);
    }
    let changes: Vec<Change> = page
        .iter()
        .zip(verdicts)
        .filter_map(|(p, v)| change(p, v, &confirmed, &reopened, head, now))
        .collect();
    let queued = emit(&mut tx, &changes, now).await?;
    for c in &changes {
        report.add(c.payment.status, c.kind);
    }
    store.commit(tx, queued).await?;
    Ok(())
}

/// The change a verdict made, if its update applied.
fn change(
    p: &Payment,
    v: &Verdict,
    confirmed: &HashSet<PaymentId>,
    reopened: &HashSet<PaymentId>,
    head: i64,
    now: i64,
) -> Option<Change> {
    match v {
        Verdict::Confirm {
            status,
            block,
            onchain_amount,
        } if confirmed.contains(&p.id) => Some(Change {
            payment: Payment {
                status: *status,
                block_number: Some(*block),
                received_amount: onchain_amount.clone().or(p.received_amount.clone()),
                reported_amount: onchain_amount.as_ref().and(p.received_amount.clone()),
                confirmed_at: Some(now),
                updated_at: now,
                ..p.clone()
            },
            kind: EventType::for_payment_status(*status)?,
            head: Some(head),
            reason: None,
        }),
        Verdict::Reopen { reason } if reopened.contains(&p.id) => {
            tracing::warn!(
                payment_id = %p.id,
                chain = %p.chain,
                reason,
                "payment back to pending: its transaction no longer counts"
            );
            // The event names the transaction that left, so the merchant can
            // tell which sighting it was.
            Some(Change {
                payment: Payment {
                    status: PaymentStatus::Pending,
                    updated_at: now,
                    ..p.clone()
                },
                kind: EventType::Reorged,
                head: None,
                reason: Some(reason),
            })
        }
        _ => None,
    }
}
