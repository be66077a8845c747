//! payhook's own operational events (SPEC §9): `endpoint.disabled`,
//! `endpoint.failing`, `endpoint.recovered` and `dead_letter.created`, sent
//! to `operator.webhook_url` through the same durable pipeline as merchant
//! events. They are written in the transaction of the change they report,
//! as events of a hidden merchant (`mer_operator`) for its one endpoint
//! (`ep_operator`), which [`sync`] keeps in step with the configuration;
//! with no operator URL configured nothing is written. Changes to the
//! operator's own endpoint are not reported (they would feed themselves).

use serde::Serialize;

use super::events::{insert_events, EventRow};
use super::sql::{query, Sql, Tx};
use super::Store;
use crate::config::OperatorConfig;
use crate::domain::DeadReason;
use crate::error::AppResult;
use crate::ids::{
    DeadLetterId, DeliveryId, EndpointId, EventId, MerchantId, Secret, OPERATOR_MERCHANT,
};

const URL: Sql =
    Sql::both("SELECT url FROM endpoints WHERE id = 'ep_operator' AND deleted_at IS NULL");

/// Writes operator events of `kind`, one per item of `data`, with their
/// deliveries; nothing when no operator URL is configured.
async fn emit<D: Serialize>(tx: &mut Tx, kind: &str, data: &[D], now: i64) -> AppResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    let Some(url) = query(URL).scalar_optional::<String>(&mut *tx).await? else {
        return Ok(());
    };
    let rows: Vec<EventRow> = data
        .iter()
        .map(|d| {
            let id = EventId::new();
            EventRow {
                payload: crate::events::operator_body(id.as_str(), kind, now, d),
                id,
                merchant_id: MerchantId::from(OPERATOR_MERCHANT),
                payment_id: None,
                kind: kind.to_string(),
                destinations: vec![(Some(EndpointId::operator()), url.clone())],
            }
        })
        .collect();
    insert_events(tx, &rows, now).await?;
    Ok(())
}

fn is_operator(merchant_id: &MerchantId) -> bool {
    merchant_id.as_str() == OPERATOR_MERCHANT
}

#[derive(Serialize)]
struct EndpointData<'a> {
    endpoint_id: &'a EndpointId,
    merchant_id: &'a MerchantId,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// `endpoint.disabled`: by hand, by a 410, or after failing for
/// `circuit.disable_after`.
pub async fn endpoint_disabled(
    tx: &mut Tx,
    endpoint_id: &EndpointId,
    merchant_id: &MerchantId,
    reason: &str,
    now: i64,
) -> AppResult<()> {
    if is_operator(merchant_id) {
        return Ok(());
    }
    let data = EndpointData {
        endpoint_id,
        merchant_id,
        reason: Some(reason),
    };
    emit(tx, "endpoint.disabled", &[data], now).await
}

/// `endpoint.failing` (its failures in a row reached the circuit's
/// threshold: once per outage) or `endpoint.recovered` (its first success
/// after that).
pub async fn endpoints_changed(
    tx: &mut Tx,
    endpoints: &[(EndpointId, MerchantId)],
    failing: bool,
    now: i64,
) -> AppResult<()> {
    let data: Vec<EndpointData> = endpoints
        .iter()
        .filter(|(_, m)| !is_operator(m))
        .map(|(endpoint_id, merchant_id)| EndpointData {
            endpoint_id,
            merchant_id,
            reason: None,
        })
        .collect();
    let kind = if failing {
        "endpoint.failing"
    } else {
        "endpoint.recovered"
    };
    emit(tx, kind, &data, now).await
}

/// A dead letter just written, as the operator's `dead_letter.created` tells it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Created {
    #[serde(rename = "dead_letter_id")]
    pub id: DeadLetterId,
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub merchant_id: MerchantId,
    pub endpoint_id: Option<EndpointId>,
}

#[derive(Serialize)]
struct DeadLetterData<'a> {
    #[serde(flatten)]
    created: &'a Created,
    reason: DeadReason,
}

/// `dead_letter.created`, one per dead letter.
pub async fn dead_letters_created(
    tx: &mut Tx,
    created: &[Created],
    reason: DeadReason,
    now: i64,
) -> AppResult<()> {
    let data: Vec<DeadLetterData> = created
        .iter()
        .filter(|c| !is_operator(&c.merchant_id))
        .map(|created| DeadLetterData { created, reason })
        .collect();
    emit(tx, "dead_letter.created", &data, now).await
}

const ENSURE_MERCHANT: Sql = Sql::both(
    "INSERT INTO merchants (id, name, webhook_url, secret, created_at) \
     VALUES ('mer_operator', 'payhook operator events', '', '', $1) ON CONFLICT (id) DO NOTHING",
);

const UPSERT_ENDPOINT: Sql = Sql::both(
    "INSERT INTO endpoints (id, merchant_id, url, description, secret, headers, status, created_at) \
     VALUES ('ep_operator', 'mer_operator', $1, 'operator.webhook_url', $2, $3, 'active', $4) \
     ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
     previous_secret = NULL, previous_secret_expires_at = NULL, headers = excluded.headers, \
     status = 'active', disabled_reason = NULL, deleted_at = NULL",
);

const RETIRE_ENDPOINT: Sql = Sql::both(
    "UPDATE endpoints SET deleted_at = $1, status = 'disabled', disabled_reason = 'deleted' \
     WHERE id = 'ep_operator' AND deleted_at IS NULL",
);

/// Makes the operator endpoint match the configuration (at the start of
/// `serve`, `worker` and `scanner`): created or updated when
/// `operator.webhook_url` is set (its secret sealed like a merchant's),
/// retired when it is not. Its pending deliveries are kept either way.
pub async fn sync(store: &Store, cfg: &OperatorConfig, now: i64) -> AppResult<()> {
    let mut tx = store.begin_write().await?;
    match (&cfg.webhook_url, &cfg.secret) {
        (Some(url), Some(secret)) => {
            let keys = store.keys()?;
            query(ENSURE_MERCHANT).bind(now).execute(&mut tx).await?;
            query(UPSERT_ENDPOINT)
                .bind(url.expose())
                .bind(&keys.seal(secret)?)
                .bind(&keys.seal(&Secret::new("{}"))?)
                .bind(now)
                .execute(&mut tx)
                .await?;
        }
        _ => {
            query(RETIRE_ENDPOINT).bind(now).execute(&mut tx).await?;
        }
    }
    store.commit(tx, false).await?;
    Ok(())
}
