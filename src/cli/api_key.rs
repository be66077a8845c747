//! `payhook api-key add|list|revoke`: merchant API keys.

use clap::Subcommand;

use super::output;
use crate::error::AppResult;
use crate::ids::MerchantId;
use crate::ops::api_keys;
use crate::store::{self, Page, Store};

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Issue a key for a merchant; prints it (shown only now).
    Add {
        #[arg(long = "merchant-id", alias = "merchant")]
        merchant_id: MerchantId,
        /// What the key is for.
        #[arg(long)]
        name: String,
    },
    /// A merchant's keys (never the keys themselves).
    List {
        #[arg(long = "merchant-id", alias = "merchant")]
        merchant_id: MerchantId,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Revoke a key (key_…): refused at once by every process.
    Revoke { id: String },
}

pub async fn run(store: &Store, cmd: ApiKeyCmd, json: bool) -> AppResult<()> {
    match cmd {
        ApiKeyCmd::Add { merchant_id, name } => {
            let key = api_keys::create(store, &merchant_id, &name).await?;
            if json {
                output::json(&key);
            } else {
                output::record(&key.key);
                println!("key               {}", key.secret.expose());
                println!("\nKeep the key: it is shown only now.");
            }
        }
        ApiKeyCmd::List {
            merchant_id,
            limit,
            cursor,
        } => {
            let keys =
                store::api_keys::list(store, &merchant_id, &Page::new(limit, cursor)?).await?;
            if json {
                output::json(&keys);
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.name.clone(),
                            crate::time::rfc3339(k.created_at),
                            output::opt(&k.last_used_at.map(crate::time::rfc3339)),
                            output::opt(&k.revoked_at.map(crate::time::rfc3339)),
                        ]
                    })
                    .collect();
                output::table(
                    &["id", "name", "created_at", "last_used_at", "revoked_at"],
                    &rows,
                );
            }
        }
        ApiKeyCmd::Revoke { id } => {
            let key = api_keys::revoke(store, &id).await?;
            if json {
                output::json(&key);
            } else {
                println!("api key {} revoked", key.id);
            }
        }
    }
    Ok(())
}
