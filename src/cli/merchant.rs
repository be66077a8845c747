//! `payhook merchant add|list|show|update|rotate-secret|enable|test`.

use std::collections::BTreeMap;

use clap::Subcommand;

use super::output;
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::ids::MerchantId;
use crate::ops::merchants::{self, NewMerchant};
use crate::store::{self, Page, Store};

/// The settings flags `add` and `update` share (of merchants and endpoints).
#[derive(Debug, clap::Args)]
pub struct Settings {
    /// standard (Standard Webhooks, default) or hex.
    #[arg(long = "signature-scheme", alias = "scheme")]
    pub(super) signature_scheme: Option<String>,
    /// Header of the hex scheme [default: x-payhook-signature].
    #[arg(long = "signature-header")]
    pub(super) signature_header: Option<String>,
    /// Prefix of the hex scheme [default: sha256=].
    #[arg(long = "signature-prefix")]
    pub(super) signature_prefix: Option<String>,
    /// Extra static header "Name: value" (repeatable; values are secret;
    /// on update they replace the previous set).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub(super) headers: Vec<String>,
    /// Subscribe only to these event types (repeatable or comma-separated;
    /// on update, "all" subscribes to every type again).
    #[arg(long = "event-type", value_delimiter = ',')]
    pub(super) event_types: Vec<String>,
    /// Per-endpoint rate limit override (requests per second).
    #[arg(long = "rate-limit-per-sec")]
    pub(super) rate_limit_per_sec: Option<i64>,
}

impl Settings {
    /// The event filter of `add`: none given is every type.
    pub(super) fn new_event_types(&self) -> Option<Vec<String>> {
        (!self.event_types.is_empty()).then(|| self.event_types.clone())
    }

    /// The event filter of `update`: absent, `all` (clear) or a list.
    pub(super) fn patched_event_types(&self) -> Option<Option<Vec<String>>> {
        match self.event_types.as_slice() {
            [] => None,
            [all] if all == "all" => Some(None),
            list => Some(Some(list.to_vec())),
        }
    }

    pub(super) fn headers(&self) -> AppResult<Option<BTreeMap<String, String>>> {
        let map: BTreeMap<String, String> = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<AppResult<_>>()?;
        Ok((!map.is_empty()).then_some(map))
    }
}

#[derive(Debug, Subcommand)]
pub enum MerchantCmd {
    /// Register a merchant; prints its signing secret (shown only now).
    Add {
        #[arg(long)]
        name: String,
        /// Where events are POSTed.
        #[arg(long = "webhook-url", alias = "url")]
        webhook_url: String,
        #[command(flatten)]
        settings: Settings,
    },
    /// List merchants, newest first.
    List {
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one merchant (never its secret).
    Show { id: MerchantId },
    /// Change a merchant's settings (only the flags given).
    Update {
        id: MerchantId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "webhook-url", alias = "url")]
        webhook_url: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Issue a new secret; the old one keeps signing during the overlap.
    RotateSecret {
        id: MerchantId,
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
    /// Re-enable a disabled endpoint.
    Enable { id: MerchantId },
    /// Send a webhook.test event.
    Test { id: MerchantId },
}

fn parse_header(raw: &str) -> AppResult<(String, String)> {
    let (k, v) = raw.split_once(':').ok_or_else(|| {
        AppError::bad_input(format!("--header: expected \"Name: value\", got {raw:?}"))
    })?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

pub async fn run(store: &Store, cfg: &Config, cmd: MerchantCmd, json: bool) -> AppResult<()> {
    match cmd {
        MerchantCmd::Add {
            name,
            webhook_url,
            settings,
        } => add(store, cfg, name, webhook_url, settings, json).await,
        MerchantCmd::List { limit, cursor } => {
            let list = store::merchants::list(store, &Page::new(limit, cursor)?).await?;
            print_list(&list, json);
            Ok(())
        }
        MerchantCmd::Show { id } => {
            show(&store::merchants::get(store, &id).await?, json);
            Ok(())
        }
        MerchantCmd::Update {
            id,
            name,
            webhook_url,
            settings,
        } => {
            let patch = patch(name, webhook_url, settings)?;
            show(&merchants::update(store, cfg, &id, patch).await?, json);
            Ok(())
        }
        MerchantCmd::RotateSecret { id, overlap } => rotate(store, &id, &overlap, json).await,
        MerchantCmd::Enable { id } => {
            let m = merchants::enable(store, &id).await?;
            if json {
                output::json(&m);
            } else {
                println!("merchant {} is {}", m.id, m.status);
            }
            Ok(())
        }
        MerchantCmd::Test { id } => {
            let (event_id, delivery_id) = merchants::send_test(store, &id).await?;
            if json {
                output::json(
                    &serde_json::json!({"event_id": event_id, "delivery_id": delivery_id}),
                );
            } else {
                println!(
                    "queued webhook.test {event_id} as delivery {}",
                    output::opt(&delivery_id)
                );
            }
            Ok(())
        }
    }
}

async fn add(
    store: &Store,
    cfg: &Config,
    name: String,
    webhook_url: String,
    settings: Settings,
    json: bool,
) -> AppResult<()> {
    let input = NewMerchant {
        name,
        webhook_url,
        headers: settings.headers()?,
        event_types: settings.new_event_types(),
        signature_scheme: settings.signature_scheme,
        signature_header: settings.signature_header,
        signature_prefix: settings.signature_prefix,
        rate_limit_per_sec: settings.rate_limit_per_sec,
    };
    let created = merchants::create(store, cfg, input).await?;
    if json {
        output::json(&created);
    } else {
        output::record(&created.merchant);
        println!("secret            {}", created.secret.expose());
        println!("\nKeep the secret: it is shown only now (and on rotate-secret).");
    }
    Ok(())
}

fn print_list(list: &[store::merchants::Merchant], json: bool) {
    if json {
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.name.clone(),
                m.status.to_string(),
                m.signature_scheme.to_string(),
                m.webhook_url.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["id", "name", "status", "scheme", "webhook_url"], &rows);
}

fn show(m: &store::merchants::Merchant, json: bool) {
    if json {
        output::json(m);
    } else {
        output::record(m);
    }
}

/// Only the flags given change; `--event-type all` subscribes to every type.
fn patch(
    name: Option<String>,
    webhook_url: Option<String>,
    settings: Settings,
) -> AppResult<merchants::MerchantPatch> {
    Ok(merchants::MerchantPatch {
        name,
        webhook_url,
        headers: settings.headers()?,
        event_types: settings.patched_event_types(),
        signature_scheme: settings.signature_scheme,
        signature_header: settings.signature_header.map(Some),
        signature_prefix: settings.signature_prefix.map(Some),
        rate_limit_per_sec: settings.rate_limit_per_sec.map(Some),
    })
}

async fn rotate(store: &Store, id: &MerchantId, overlap: &str, json: bool) -> AppResult<()> {
    let overlap = super::duration_arg("--overlap", overlap)?;
    let rotated = merchants::rotate_secret(store, id, overlap).await?;
    if json {
        output::json(&rotated);
    } else {
        println!("new secret  {}", rotated.secret.expose());
        let until = rotated
            .merchant
            .previous_secret_expires_at
            .map(crate::time::rfc3339);
        println!(
            "the previous secret keeps signing until {}",
            output::opt(&until)
        );
    }
    Ok(())
}
