//! `payhook event show|replay`.

use clap::Subcommand;

use super::output;
use crate::delivery::dlq;
use crate::error::AppResult;
use crate::ids::EventId;
use crate::store::{self, Store};

#[derive(Debug, Subcommand)]
pub enum EventCmd {
    /// Show an event and the exact body that is sent.
    Show { id: EventId },
    /// Deliver an event again (same webhook-id and body) to its current target.
    Replay { id: EventId },
}

pub async fn run(store: &Store, cmd: EventCmd, json: bool) -> AppResult<()> {
    match cmd {
        EventCmd::Show { id } => {
            let e = store::events::get(store, &id).await?;
            if json {
                output::json(&e);
            } else {
                output::record(&e);
            }
        }
        EventCmd::Replay { id } => {
            let made = dlq::replay(store, &id).await?;
            if json {
                output::json(&serde_json::json!({
                    "event_id": id, "delivery_id": made.first(), "delivery_ids": made,
                }));
            } else {
                for delivery_id in made {
                    println!("replaying {id} as delivery {delivery_id}");
                }
            }
        }
    }
    Ok(())
}
