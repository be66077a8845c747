//! Where an event goes: a merchant's endpoints as the fan-out sees them
//! (primary first), each with its filter and status. Read by the event
//! writer (`events`) in its transaction; `endpoints` owns the rows.

use super::sql::{query, Sql, Tx};
use crate::domain::EndpointStatus;
use crate::error::AppResult;
use crate::events::EventType;
use crate::ids::{EndpointId, MerchantId};

/// Whether an event filter (a JSON array, `None` = all) takes `kind`;
/// `webhook.test` always passes.
pub fn filter_takes(event_types: Option<&str>, kind: EventType) -> bool {
    if kind == EventType::Test {
        return true;
    }
    match event_types {
        None => true,
        Some(list) => serde_json::from_str::<Vec<String>>(list)
            .map(|l| l.iter().any(|t| t == kind.as_str()))
            .unwrap_or(true),
    }
}

/// Where one event may go: an endpoint, its URL, filter and status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Target {
    pub id: EndpointId,
    pub url: String,
    pub event_types: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: EndpointStatus,
}

/// A merchant's endpoints as the fan-out sees them, primary first.
#[derive(Debug, Clone)]
pub struct Targets {
    pub merchant_id: MerchantId,
    pub endpoints: Vec<Target>,
}

/// One delivery to make: the endpoint (none for a payment's `callback_url`)
/// and the URL.
pub type Destination = (Option<EndpointId>, String);

impl Targets {
    /// Where an event of `kind` goes: the payment's `callback_url` (if the
    /// primary endpoint, which signs it, takes the type), else every active
    /// endpoint whose filter takes it.
    pub fn destinations(&self, kind: EventType, callback_url: Option<&str>) -> Vec<Destination> {
        if let Some(url) = callback_url {
            return self
                .endpoints
                .first()
                .filter(|p| filter_takes(p.event_types.as_deref(), kind))
                .map(|_| vec![(None, url.to_string())])
                .unwrap_or_default();
        }
        self.endpoints
            .iter()
            .filter(|t| t.status == EndpointStatus::Active)
            .filter(|t| filter_takes(t.event_types.as_deref(), kind))
            .map(|t| (Some(t.id.clone()), t.url.clone()))
            .collect()
    }
}

const TARGETS: Sql = Sql::both(
    "SELECT id, url, event_types, status FROM endpoints \
     WHERE merchant_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
);

/// The merchant's endpoints, read inside the caller's transaction (code
/// holding a write transaction must read through it: see `merchants::get_in`).
pub async fn targets_in(tx: &mut Tx, merchant_id: &MerchantId) -> AppResult<Targets> {
    let endpoints: Vec<Target> = query(TARGETS).bind(merchant_id).fetch_all(tx).await?;
    Ok(Targets {
        merchant_id: merchant_id.clone(),
        endpoints,
    })
}
