//! Payment operations: register a payment, record a chain sighting
//! (`pending` → `detected`, with its `payment.detected` event in the same
//! transaction), set a chain head.

use serde::Deserialize;

use crate::config::Config;
use crate::delivery::target;
use crate::domain::PaymentStatus;
use crate::error::{AppError, AppResult};
use crate::events::EventType;
use crate::ids::{MerchantId, PaymentId};
use crate::money::Amount;
use crate::ops::merchants::target_policy;
use crate::ops::text;
use crate::store::events::PaymentEvent;
use crate::store::payments::{self, Payment};
use crate::store::{self, audit, chains, endpoints, merchants, Store};
use crate::time::{now_ms, parse_rfc3339};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    pub merchant_id: MerchantId,
    pub reference: String,
    pub chain: String,
    #[serde(default)]
    pub token: Option<String>,
    pub address: String,
    pub expected_amount: String,
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    pub tx_hash: String,
    pub amount: String,
    pub block_number: i64,
}

fn known_chain(cfg: &Config, chain: &str) -> AppResult<()> {
    if cfg.chains.contains_key(chain) {
        return Ok(());
    }
    let known: Vec<&str> = cfg.chains.keys().map(String::as_str).collect();
    Err(AppError::bad_input(format!(
        "chain: expected one of the configured chains ({}), got {chain:?}",
        if known.is_empty() {
            "none configured: add [chains.<name>] to config.toml".to_string()
        } else {
            known.join(", ")
        }
    )))
}

/// On a chain with a node, a token payment is checked against the token's
/// contract: the symbol must be configured there.
fn checked_token(cfg: &Config, chain: &str, symbol: &str) -> AppResult<()> {
    let Some(c) = cfg.chains.get(chain).filter(|c| c.rpc_url.is_some()) else {
        return Ok(());
    };
    if c.token(symbol).is_some() {
        return Ok(());
    }
    let known = c.token_symbols();
    Err(AppError::bad_input(format!(
        "token: expected one of the tokens configured for chain {chain} ({}), got {symbol:?}",
        if known.is_empty() {
            format!(
                "none configured: add [chains.{chain}.tokens.<SYMBOL>] with contract and decimals"
            )
        } else {
            known.join(", ")
        }
    )))
}

pub async fn create(store: &Store, cfg: &Config, input: NewPayment) -> AppResult<Payment> {
    text("reference", &input.reference, 200)?;
    text("address", &input.address, 200)?;
    known_chain(cfg, &input.chain)?;
    if let Some(t) = &input.token {
        text("token", t, 100)?;
        checked_token(cfg, &input.chain, t)?;
    }
    Amount::parse("expected_amount", &input.expected_amount)?;
    if let Some(u) = &input.callback_url {
        target::vet_url_resolved("callback_url", u, target_policy(cfg)).await?;
    }
    let expires_at = input
        .expires_at
        .as_deref()
        .map(|s| parse_rfc3339("expires_at", s))
        .transpose()?;
    let merchant = merchants::get(store, &input.merchant_id).await?;
    let now = now_ms();
    let p = Payment {
        id: PaymentId::new(),
        merchant_id: merchant.id,
        reference: input.reference,
        chain: input.chain,
        token: input.token,
        address: input.address,
        expected_amount: input.expected_amount,
        received_amount: None,
        reported_amount: None,
        tx_hash: None,
        block_number: None,
        status: PaymentStatus::Pending,
        callback_url: input.callback_url,
        expires_at,
        detected_at: None,
        confirmed_at: None,
        created_at: now,
        updated_at: now,
    };
    let summary = serde_json::json!({
        "merchant_id": p.merchant_id, "reference": p.reference, "chain": p.chain,
        "token": p.token, "expected_amount": p.expected_amount,
        "callback_url": p.callback_url.as_deref().map(crate::urls::redact_url),
    });
    let mut tx = store.begin_write().await?;
    payments::insert(&mut tx, &p).await?;
    audit::record_in(&mut tx, "payment.create", Some(p.id.as_str()), summary).await?;
    store.commit(tx, false).await?;
    Ok(p)
}

/// Records a sighting. Reporting the same transaction again is a no-op
/// that returns the payment; a different one for a detected payment is a
/// conflict.
pub async fn detect(
    store: &Store,
    cfg: &Config,
    id: &PaymentId,
    d: Detection,
) -> AppResult<Payment> {
    text("tx_hash", &d.tx_hash, 200)?;
    Amount::parse("amount", &d.amount)?;
    crate::domain::block_height("block_number", d.block_number)?;
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let current = payments::get_in(&mut tx, id).await?;
    // A chain with a node looks the transaction up by this hash: it must be
    // one, or every lookup of the chain's batch would fail.
    let node_chain = cfg
        .chains
        .get(&current.chain)
        .is_some_and(|c| c.rpc_url.is_some());
    let tx_hash = if node_chain {
        let h = d.tx_hash.to_ascii_lowercase();
        let hex = h.strip_prefix("0x").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AppError::bad_input(format!(
                "tx_hash: expected 0x and 64 hex digits on chain {} (it is checked on its node), got {:?}",
                current.chain, d.tx_hash
            )));
        }
        h
    } else {
        d.tx_hash.clone()
    };
    let d = Detection { tx_hash, ..d };
    if !payments::mark_detected(&mut tx, id, &d.tx_hash, &d.amount, d.block_number, now).await? {
        drop(tx);
        if current.tx_hash.as_deref() == Some(d.tx_hash.as_str()) {
            return Ok(current);
        }
        return Err(AppError::conflict(format!(
            "payment {id} is {} and cannot be detected again",
            current.status
        )));
    }
    let p = payments::get_in(&mut tx, id).await?;
    let targets = endpoints::targets_in(&mut tx, &p.merchant_id).await?;
    let head = chains::head_in(&mut tx, &p.chain).await?;
    // A node chain's head is read at every scan; one older than a few scan
    // intervals counts as unknown (`confirmations` is then null).
    let head = match (head, cfg.chains.get(&p.chain)) {
        (Some((_, read_at)), Some(c))
            if c.rpc_url.is_some()
                && now - read_at > 3 * cfg.scanner.interval.0.as_millis() as i64 =>
        {
            None
        }
        (h, _) => h.map(|(height, _)| height),
    };
    let event = PaymentEvent {
        targets: &targets,
        payment: &p,
        kind: EventType::Detected,
        head,
        reason: None,
    };
    store::events::emit_for_payment(&mut tx, &event, now).await?;
    let summary = serde_json::json!({
        "tx_hash": p.tx_hash, "amount": p.received_amount, "block_number": p.block_number,
    });
    audit::record_in(&mut tx, "payment.detect", Some(p.id.as_str()), summary).await?;
    store.commit(tx, true).await?;
    Ok(p)
}

/// Scans now (`payhook scan`, `POST /v1/scans`).
pub async fn scan(store: &Store, cfg: &Config) -> AppResult<crate::scanner::ScanReport> {
    let report = crate::scanner::scan_once(store, cfg).await?;
    let summary = serde_json::to_value(&report).unwrap_or_default();
    audit::record(store, "scan.run", None, summary).await;
    Ok(report)
}

pub async fn set_head(store: &Store, cfg: &Config, chain: &str, height: i64) -> AppResult<()> {
    known_chain(cfg, chain)?;
    if cfg.chains[chain].rpc_url.is_some() {
        return Err(AppError::conflict(format!(
            "chain {chain} reads its head from its node (chains.{chain}.rpc_url); \
             setting it by hand is only for chains without rpc_url"
        )));
    }
    crate::domain::block_height("height", height)?;
    chains::set_head(store, chain, height, now_ms()).await?;
    let summary = serde_json::json!({"height": height});
    audit::record(store, "chain.set_head", Some(chain), summary).await;
    Ok(())
}
