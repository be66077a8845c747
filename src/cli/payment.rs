//! `payhook payment add|detect|show` and `payhook chain head|list`.

use clap::Subcommand;

use super::output;
use crate::config::Config;
use crate::error::AppResult;
use crate::ids::{MerchantId, PaymentId};
use crate::ops::payments::{self, Detection, NewPayment};
use crate::store::{self, Store};

#[derive(Debug, Subcommand)]
pub enum PaymentCmd {
    /// Register a payment the gateway expects.
    Add {
        #[arg(long = "merchant-id", alias = "merchant")]
        merchant_id: MerchantId,
        /// The merchant's order id (unique per merchant).
        #[arg(long)]
        reference: String,
        #[arg(long)]
        chain: String,
        /// Token symbol or contract; omit for the native coin.
        #[arg(long)]
        token: Option<String>,
        #[arg(long)]
        address: String,
        /// Decimal string, e.g. 100.00.
        #[arg(long = "expected-amount", alias = "amount")]
        expected_amount: String,
        /// Per-payment override of the merchant's webhook_url.
        #[arg(long = "callback-url")]
        callback_url: Option<String>,
        /// RFC 3339 time after which a pending payment expires.
        #[arg(long = "expires-at")]
        expires_at: Option<String>,
    },
    /// Report a chain sighting: pending → detected.
    Detect {
        id: PaymentId,
        #[arg(long = "tx-hash")]
        tx_hash: String,
        /// Decimal string of what arrived.
        #[arg(long)]
        amount: String,
        #[arg(long = "block-number", alias = "block")]
        block_number: i64,
    },
    /// Show a payment and its events.
    Show { id: PaymentId },
}

#[derive(Debug, Subcommand)]
pub enum ChainCmd {
    /// Set a chain's head height (chains without rpc_url).
    Head { chain: String, height: i64 },
    /// List known chain heads.
    List,
}

pub async fn run(store: &Store, cfg: &Config, cmd: PaymentCmd, json: bool) -> AppResult<()> {
    match cmd {
        PaymentCmd::Add {
            merchant_id,
            reference,
            chain,
            token,
            address,
            expected_amount,
            callback_url,
            expires_at,
        } => {
            let input = NewPayment {
                merchant_id,
                reference,
                chain,
                token,
                address,
                expected_amount,
                callback_url,
                expires_at,
            };
            let p = payments::create(store, cfg, input).await?;
            if json {
                output::json(&p);
            } else {
                output::record(&p);
            }
        }
        PaymentCmd::Detect {
            id,
            tx_hash,
            amount,
            block_number,
        } => {
            let sighting = Detection {
                tx_hash,
                amount,
                block_number,
            };
            let p = payments::detect(store, cfg, &id, sighting).await?;
            if json {
                output::json(&p);
            } else {
                println!("payment {} is {}", p.id, p.status);
            }
        }
        PaymentCmd::Show { id } => show(store, &id, json).await?,
    }
    Ok(())
}

/// A payment and its event timeline.
async fn show(store: &Store, id: &PaymentId, json: bool) -> AppResult<()> {
    let p = store::payments::get(store, id).await?;
    let events = store::events::list_for_payment(store, id).await?;
    if json {
        #[derive(serde::Serialize)]
        struct Timeline<'a> {
            #[serde(flatten)]
            payment: &'a store::payments::Payment,
            events: Vec<serde_json::Value>,
        }
        let events = events
            .iter()
            .map(|e| {
                let at = crate::time::rfc3339(e.created_at);
                serde_json::json!({"id": e.id, "type": e.kind, "created_at": at})
            })
            .collect();
        output::json(&Timeline {
            payment: &p,
            events,
        });
        return Ok(());
    }
    output::record(&p);
    println!();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.kind.clone(),
                crate::time::rfc3339(e.created_at),
            ]
        })
        .collect();
    output::table(&["event", "type", "created_at"], &rows);
    Ok(())
}

pub async fn run_chain(store: &Store, cfg: &Config, cmd: ChainCmd, json: bool) -> AppResult<()> {
    match cmd {
        ChainCmd::Head { chain, height } => {
            payments::set_head(store, cfg, &chain, height).await?;
            output::done(json, &format!("{chain} head is {height}"));
        }
        ChainCmd::List => {
            let heads = store::chains::list(store).await?;
            if json {
                output::json(&heads);
            } else {
                let rows: Vec<Vec<String>> = cfg
                    .chains
                    .iter()
                    .map(|(name, c)| {
                        let head = heads.iter().find(|h| &h.name == name);
                        vec![
                            name.clone(),
                            c.confirmations.to_string(),
                            head.map(|h| h.head.to_string())
                                .unwrap_or_else(|| "-".into()),
                            head.map(|h| crate::time::rfc3339(h.updated_at))
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                output::table(&["chain", "confirmations", "head", "updated_at"], &rows);
            }
        }
    }
    Ok(())
}
