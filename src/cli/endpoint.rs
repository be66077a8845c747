//! `payhook endpoint add|list|show|update|delete|rotate-secret|reveal-secret|
//! test|enable|disable|health|recover`: a merchant's webhook endpoints.

use clap::Subcommand;

use super::merchant::Settings;
use super::output;
use crate::config::Config;
use crate::error::AppResult;
use crate::ids::{EndpointId, MerchantId};
use crate::ops::endpoints::{self, AuditAs, EndpointPatch, NewEndpoint};
use crate::store::{self, Page, Store};

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Add an endpoint to a merchant; prints its signing secret.
    Add {
        #[arg(long = "merchant-id", alias = "merchant")]
        merchant_id: MerchantId,
        /// Where events are POSTed.
        #[arg(long)]
        url: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
    /// List a merchant's endpoints, oldest (the primary) first.
    List {
        #[arg(long = "merchant-id", alias = "merchant")]
        merchant_id: MerchantId,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one endpoint (never its secret).
    Show { id: EndpointId },
    /// Change an endpoint's settings (only the flags given).
    Update {
        id: EndpointId,
        #[arg(long)]
        url: Option<String>,
        /// A description ("" clears it).
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Delete an endpoint; its pending deliveries go to the DLQ.
    Delete { id: EndpointId },
    /// Issue a new secret; the old one keeps signing during the overlap.
    RotateSecret {
        id: EndpointId,
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
    /// Print the signing secret (recorded in the audit log).
    RevealSecret { id: EndpointId },
    /// Send a webhook.test event to this endpoint.
    Test { id: EndpointId },
    /// Turn a disabled endpoint back on; its waiting deliveries go out.
    Enable { id: EndpointId },
    /// Stop sending to an endpoint until `enable` (deliveries wait).
    Disable { id: EndpointId },
    /// Circuit state, last success, failing since, attempts over 24 h.
    Health { id: EndpointId },
    /// Resubmit the endpoint's dead letters that died in [since, until).
    Recover {
        id: EndpointId,
        /// RFC 3339 time.
        #[arg(long, value_parser = super::rfc3339_arg)]
        since: i64,
        /// RFC 3339 time [default: now].
        #[arg(long, value_parser = super::rfc3339_arg)]
        until: Option<i64>,
    },
}

pub async fn run(store: &Store, cfg: &Config, cmd: EndpointCmd, json: bool) -> AppResult<()> {
    match cmd {
        EndpointCmd::Add {
            merchant_id,
            url,
            description,
            settings,
        } => {
            let input = NewEndpoint {
                url,
                description,
                headers: settings.headers()?,
                event_types: settings.new_event_types(),
                signature_scheme: settings.signature_scheme,
                signature_header: settings.signature_header,
                signature_prefix: settings.signature_prefix,
                rate_limit_per_sec: settings.rate_limit_per_sec,
            };
            let created = endpoints::create(store, cfg, &merchant_id, input).await?;
            if json {
                output::json(&created);
            } else {
                output::record(&created.endpoint);
                println!("secret            {}", created.secret.expose());
                println!("\nKeep the secret: it is shown only now (and on rotate-secret).");
            }
        }
        EndpointCmd::List {
            merchant_id,
            limit,
            cursor,
        } => {
            store::merchants::get(store, &merchant_id).await?;
            let page = Page::new(limit, cursor)?;
            let list = store::endpoints::list(store, &merchant_id, &page).await?;
            print_list(&list, json);
        }
        EndpointCmd::Show { id } => show(&store::endpoints::get(store, &id).await?, json),
        EndpointCmd::Update {
            id,
            url,
            description,
            settings,
        } => {
            let patch = EndpointPatch {
                url,
                description: description.map(|d| Some(d).filter(|d| !d.is_empty())),
                headers: settings.headers()?,
                event_types: settings.patched_event_types(),
                signature_scheme: settings.signature_scheme,
                signature_header: settings.signature_header.map(Some),
                signature_prefix: settings.signature_prefix.map(Some),
                rate_limit_per_sec: settings.rate_limit_per_sec.map(Some),
            };
            let ep = endpoints::update(store, cfg, &id, patch, AuditAs::Endpoint).await?;
            show(&ep, json);
        }
        EndpointCmd::Delete { id } => {
            let dead = endpoints::delete(store, &id).await?;
            let said = serde_json::json!({"id": id, "deleted": true, "dead_lettered": dead});
            if json {
                output::json(&said);
            } else {
                println!("deleted {id}; {dead} pending deliveries moved to the DLQ");
            }
        }
        EndpointCmd::RotateSecret { id, overlap } => {
            let overlap = endpoints::parse_overlap(Some(&overlap))?;
            let rotated = endpoints::rotate_secret(store, &id, overlap, AuditAs::Endpoint).await?;
            if json {
                output::json(&rotated);
            } else {
                println!("new secret  {}", rotated.secret.expose());
                let until = rotated
                    .endpoint
                    .previous_secret_expires_at
                    .map(crate::time::rfc3339);
                println!(
                    "the previous secret keeps signing until {}",
                    output::opt(&until)
                );
            }
        }
        EndpointCmd::RevealSecret { id } => {
            let revealed = endpoints::reveal_secret(store, &id).await?;
            if json {
                output::json(&revealed);
            } else {
                println!("{}", revealed.secret.expose());
            }
        }
        EndpointCmd::Test { id } => {
            let (event_id, delivery_id) =
                endpoints::send_test(store, &id, AuditAs::Endpoint).await?;
            if json {
                let said = serde_json::json!({"event_id": event_id, "delivery_id": delivery_id});
                output::json(&said);
            } else {
                let delivery = output::opt(&delivery_id);
                println!("queued webhook.test {event_id} as delivery {delivery}");
            }
        }
        EndpointCmd::Enable { id } => show(
            &endpoints::enable(store, &id, AuditAs::Endpoint).await?,
            json,
        ),
        EndpointCmd::Disable { id } => show(&endpoints::disable(store, &id).await?, json),
        EndpointCmd::Health { id } => {
            let health = endpoints::health(store, cfg, &id).await?;
            if json {
                output::json(&health);
            } else {
                output::record(&health);
            }
        }
        EndpointCmd::Recover { id, since, until } => {
            let count = endpoints::recover(store, &id, since, until).await?;
            if json {
                output::json(&serde_json::json!({"count": count}));
            } else {
                println!("resubmitted {count} dead letters of {id}");
            }
        }
    }
    Ok(())
}

fn print_list(list: &[store::endpoints::Endpoint], json: bool) {
    if json {
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.status.to_string(),
                e.signature_scheme.to_string(),
                crate::urls::redact_url(&e.url),
                e.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["id", "status", "scheme", "url", "description"], &rows);
}

fn show(ep: &store::endpoints::Endpoint, json: bool) {
    if json {
        output::json(ep);
    } else {
        output::record(ep);
    }
}
