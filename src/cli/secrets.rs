//! `payhook secrets rotate-key`: re-seals every stored secret under the
//! current `secrets.key` (rows sealed under a key now in
//! `secrets.previous_keys`, and any written before sealing existed).

use clap::Subcommand;

use super::output;
use crate::error::AppResult;
use crate::store::{endpoints, Store};

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Re-seal every secret under the current secrets.key (after moving
    /// the old key to secrets.previous_keys).
    RotateKey,
}

pub async fn run(store: &Store, cmd: SecretsCmd, json: bool) -> AppResult<()> {
    match cmd {
        SecretsCmd::RotateKey => {
            let keys = store.keys()?;
            let which = endpoints::Reseal::NotUnderCurrentKey;
            let changed = endpoints::reseal(store, which, crate::time::now_ms()).await?;
            let summary = serde_json::json!({"resealed": changed, "key_id": keys.current_id()});
            crate::store::audit::record(store, "secrets.rotate_key", None, summary).await;
            if json {
                output::json(
                    &serde_json::json!({"resealed": changed, "key_id": keys.current_id()}),
                );
            } else {
                println!(
                    "{changed} merchants' secrets re-sealed under key {}; once every process \
                     runs with this key, the previous one may be removed from \
                     secrets.previous_keys",
                    keys.current_id()
                );
            }
        }
    }
    Ok(())
}
