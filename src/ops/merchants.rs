//! Merchant operations for the one-URL API: a merchant is created with its
//! primary endpoint, and rotate/test/enable act on that endpoint
//! (`ops::endpoints` does the work).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::ids::{DeliveryId, EventId, MerchantId, Secret};
use crate::ops::endpoints::{self, present, show_secret, AuditAs, EndpointPatch, NewEndpoint};
use crate::store::merchants::{self, Merchant};
use crate::store::{audit, Store};

pub use crate::ops::endpoints::target_policy;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMerchant {
    pub name: String,
    pub webhook_url: String,
    #[serde(default)]
    pub signature_scheme: Option<String>,
    #[serde(default)]
    pub signature_header: Option<String>,
    #[serde(default)]
    pub signature_prefix: Option<String>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub rate_limit_per_sec: Option<i64>,
}

/// A merchant with its primary endpoint's secret: shown only at creation
/// and rotation.
#[derive(Debug, Serialize)]
pub struct WithSecret {
    #[serde(flatten)]
    pub merchant: Merchant,
    #[serde(serialize_with = "show_secret")]
    pub secret: Secret,
}

/// Creates the merchant and its primary endpoint in one transaction.
pub async fn create(store: &Store, cfg: &Config, input: NewMerchant) -> AppResult<WithSecret> {
    let name = input.name.trim().to_string();
    super::text("name", &name, 200)?;
    let id = MerchantId::new();
    let primary = NewEndpoint {
        url: input.webhook_url,
        description: None,
        signature_scheme: input.signature_scheme,
        signature_header: input.signature_header,
        signature_prefix: input.signature_prefix,
        headers: input.headers,
        event_types: input.event_types,
        rate_limit_per_sec: input.rate_limit_per_sec,
    };
    let (endpoint, secret) = endpoints::build(store, cfg, &id, primary, "webhook_url").await?;
    let mut tx = store.begin_write().await?;
    merchants::insert(&mut tx, &id, &name, &endpoint.url, endpoint.created_at).await?;
    crate::store::endpoints::insert(&mut tx, &endpoint).await?;
    store.commit(tx, false).await?;
    let mut summary = endpoints::settings_summary(&endpoint);
    summary["name"] = serde_json::Value::from(name);
    summary["endpoint_id"] = serde_json::json!(endpoint.id);
    audit::record(store, "merchant.create", Some(id.as_str()), summary).await;
    Ok(WithSecret {
        merchant: merchants::get(store, &id).await?,
        secret,
    })
}

/// A partial update (`PATCH`): the name, and the primary endpoint's
/// settings; absent fields stay, `null` clears the optional ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantPatch {
    pub name: Option<String>,
    pub webhook_url: Option<String>,
    pub signature_scheme: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub signature_header: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub signature_prefix: Option<Option<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present")]
    pub event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub rate_limit_per_sec: Option<Option<i64>>,
}

pub async fn update(
    store: &Store,
    cfg: &Config,
    id: &MerchantId,
    patch: MerchantPatch,
) -> AppResult<Merchant> {
    let m = merchants::get(store, id).await?;
    let endpoint_patch = EndpointPatch {
        url: patch.webhook_url,
        description: None,
        signature_scheme: patch.signature_scheme,
        signature_header: patch.signature_header,
        signature_prefix: patch.signature_prefix,
        headers: patch.headers,
        event_types: patch.event_types,
        rate_limit_per_sec: patch.rate_limit_per_sec,
    };
    let name = match patch.name {
        Some(n) => {
            let n = n.trim().to_string();
            super::text("name", &n, 200)?;
            Some(n)
        }
        None => None,
    };
    if !endpoint_patch.is_empty() {
        let primary = m.endpoint_id.clone().ok_or_else(|| no_endpoint(id))?;
        endpoints::update(store, cfg, &primary, endpoint_patch, AuditAs::Merchant(id)).await?;
    }
    if let Some(name) = &name {
        let mut tx = store.begin_write().await?;
        merchants::rename(&mut tx, id, name).await?;
        store.commit(tx, false).await?;
        let summary = serde_json::json!({"name": name});
        audit::record(store, "merchant.update", Some(id.as_str()), summary).await;
    }
    merchants::get(store, id).await
}

fn no_endpoint(id: &MerchantId) -> AppError {
    AppError::conflict(format!(
        "merchant {id} has no endpoint; add one with POST /v1/merchants/{id}/endpoints"
    ))
}

/// The merchant's primary endpoint, or a conflict naming the way out.
async fn primary(store: &Store, id: &MerchantId) -> AppResult<crate::ids::EndpointId> {
    merchants::get(store, id)
        .await?
        .endpoint_id
        .ok_or_else(|| no_endpoint(id))
}

/// Rotates the primary endpoint's secret.
pub async fn rotate_secret(
    store: &Store,
    id: &MerchantId,
    overlap: Duration,
) -> AppResult<WithSecret> {
    let primary = primary(store, id).await?;
    let audit_as = AuditAs::Merchant(id);
    let rotated = endpoints::rotate_secret(store, &primary, overlap, audit_as).await?;
    Ok(WithSecret {
        merchant: merchants::get(store, id).await?,
        secret: rotated.secret,
    })
}

/// Enables the primary endpoint.
pub async fn enable(store: &Store, id: &MerchantId) -> AppResult<Merchant> {
    endpoints::enable(store, &primary(store, id).await?, AuditAs::Merchant(id)).await?;
    merchants::get(store, id).await
}

/// Queues a `webhook.test` event to the primary endpoint.
pub async fn send_test(store: &Store, id: &MerchantId) -> AppResult<(EventId, Option<DeliveryId>)> {
    endpoints::send_test(store, &primary(store, id).await?, AuditAs::Merchant(id)).await
}
