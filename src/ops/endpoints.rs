//! Endpoint operations: create (validates and issues the secret), update,
//! rotate and reveal the secret, test, enable, disable, delete, health and
//! recover. Every change is audited, never with a secret in it.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::delivery::dlq;
use crate::delivery::signer::HexFormat;
use crate::delivery::target::{self, TargetPolicy};
use crate::domain::{EndpointStatus, SignatureScheme};
use crate::error::{AppError, AppResult};
use crate::events::EventType;
use crate::ids::{self, DeliveryId, EndpointId, EventId, MerchantId, Secret};
use crate::sealing::KeyRing;
use crate::store::endpoints::{self, Endpoint, Target};
use crate::store::{self, audit, dead_letters, Store};
use crate::time::now_ms;

/// Headers payhook sets itself; extra headers may not replace them.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "user-agent",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// An endpoint's settings as given (`POST /v1/merchants/{id}/endpoints`,
/// `endpoint add`, and the endpoint part of a new merchant).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    pub url: String,
    #[serde(default)]
    pub description: Option<String>,
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

/// An endpoint with its secret: shown only at creation, at rotation and by
/// the (audited) reveal.
#[derive(Debug, Serialize)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    #[serde(serialize_with = "show_secret")]
    pub secret: Secret,
}

/// The one place a signing secret is serialized: the answer to its
/// creation, rotation or reveal.
pub(crate) fn show_secret<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

pub fn target_policy(cfg: &Config) -> TargetPolicy {
    TargetPolicy {
        allow_http: cfg.delivery.allow_http,
        allow_private_targets: cfg.delivery.allow_private_targets,
    }
}

/// A new endpoint row for `merchant_id` from `input` (validated), and its
/// secret in the clear.
pub(crate) async fn build(
    store: &Store,
    cfg: &Config,
    merchant_id: &MerchantId,
    input: NewEndpoint,
    url_field: &str,
) -> AppResult<(Endpoint, Secret)> {
    let keys = store.keys()?;
    let secret = ids::new_secret();
    let mut ep = Endpoint {
        id: EndpointId::new(),
        merchant_id: merchant_id.clone(),
        url: String::new(),
        description: None,
        secret: keys.seal(&secret)?,
        previous_secret: None,
        previous_secret_expires_at: None,
        signature_scheme: SignatureScheme::Standard,
        signature_header: None,
        signature_prefix: None,
        headers: keys.seal(&Secret::new("{}"))?,
        header_names: Vec::new(),
        event_types: None,
        rate_limit_per_sec: None,
        status: EndpointStatus::Active,
        disabled_reason: None,
        created_at: now_ms(),
    };
    apply(&mut ep, input, cfg, keys, url_field).await?;
    Ok((ep, secret))
}

/// Adds an endpoint to a merchant; returns it with its secret.
pub async fn create(
    store: &Store,
    cfg: &Config,
    merchant_id: &MerchantId,
    input: NewEndpoint,
) -> AppResult<EndpointWithSecret> {
    let (endpoint, secret) = build(store, cfg, merchant_id, input, "url").await?;
    let mut tx = store.begin_write().await?;
    if !store::merchants::exists_in(&mut tx, merchant_id).await? {
        return Err(AppError::not_found("merchant", merchant_id.as_str()));
    }
    endpoints::insert(&mut tx, &endpoint).await?;
    store.commit(tx, false).await?;
    audit::record(
        store,
        "endpoint.create",
        Some(endpoint.id.as_str()),
        settings_summary(&endpoint),
    )
    .await;
    Ok(EndpointWithSecret { endpoint, secret })
}

/// A partial update (`PATCH`): absent fields stay; `null` clears the
/// optional ones (`event_types: null` = all events again).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    pub url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
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

impl EndpointPatch {
    pub fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.description.is_none()
            && self.signature_scheme.is_none()
            && self.signature_header.is_none()
            && self.signature_prefix.is_none()
            && self.headers.is_none()
            && self.event_types.is_none()
            && self.rate_limit_per_sec.is_none()
    }
}

/// Tells "field absent" (`None`) from "field null" (`Some(None)`).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Applies `patch` to the endpoint (errors name the URL `webhook_url` for
/// the one-URL API).
pub async fn update(
    store: &Store,
    cfg: &Config,
    id: &EndpointId,
    patch: EndpointPatch,
    audit_as: AuditAs<'_>,
) -> AppResult<Endpoint> {
    let url_field = match audit_as {
        AuditAs::Endpoint => "url",
        AuditAs::Merchant(_) => "webhook_url",
    };
    let mut ep = endpoints::get(store, id).await?;
    let input = merged(store.keys()?, &ep, patch)?;
    apply(&mut ep, input, cfg, store.keys()?, url_field).await?;
    let mut tx = store.begin_write().await?;
    endpoints::update(&mut tx, &ep).await?;
    store.commit(tx, false).await?;
    audit_as
        .record(store, "update", &ep.id, settings_summary(&ep))
        .await;
    Ok(ep)
}

/// The endpoint's settings with `patch` over them. A change of scheme drops
/// the old scheme's header and prefix unless given again.
fn merged(keys: &KeyRing, ep: &Endpoint, patch: EndpointPatch) -> AppResult<NewEndpoint> {
    let scheme = match patch.signature_scheme.as_deref() {
        Some(raw) => SignatureScheme::parse("signature_scheme", raw)?,
        None => ep.signature_scheme,
    };
    let keep = scheme == ep.signature_scheme;
    let kept = |v: &Option<String>| if keep { v.clone() } else { None };
    Ok(NewEndpoint {
        url: patch.url.unwrap_or_else(|| ep.url.clone()),
        description: patch.description.unwrap_or_else(|| ep.description.clone()),
        signature_header: patch
            .signature_header
            .unwrap_or_else(|| kept(&ep.signature_header)),
        signature_prefix: patch
            .signature_prefix
            .unwrap_or_else(|| kept(&ep.signature_prefix)),
        signature_scheme: Some(scheme.as_str().to_string()),
        headers: match patch.headers {
            Some(h) => Some(h),
            None => Some(
                endpoints::open_headers(keys, &ep.headers)?
                    .into_iter()
                    .collect(),
            ),
        },
        event_types: patch.event_types.unwrap_or_else(|| {
            ep.event_types
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok())
        }),
        rate_limit_per_sec: patch.rate_limit_per_sec.unwrap_or(ep.rate_limit_per_sec),
    })
}

/// Validates `input` and writes it into `ep`; errors name the field.
async fn apply(
    ep: &mut Endpoint,
    input: NewEndpoint,
    cfg: &Config,
    keys: &KeyRing,
    url_field: &str,
) -> AppResult<()> {
    target::vet_url_resolved(url_field, &input.url, target_policy(cfg)).await?;
    let description = match input.description {
        Some(d) if !d.trim().is_empty() => {
            super::text("description", d.trim(), 500)?;
            Some(d.trim().to_string())
        }
        _ => None,
    };
    let scheme = match input.signature_scheme.as_deref() {
        Some(raw) => SignatureScheme::parse("signature_scheme", raw)?,
        None => SignatureScheme::Standard,
    };
    let (header, prefix) = signature_format(
        scheme,
        input.signature_header.as_deref(),
        input.signature_prefix.as_deref(),
    )?;
    let given = input.headers.unwrap_or_default();
    let header_names: Vec<String> = given.keys().cloned().collect();
    let headers = keys.seal(&extra_headers(given, header.as_deref())?)?;
    let event_types = match input.event_types {
        None => None,
        Some(list) => {
            for t in &list {
                EventType::parse("event_types", t)?;
            }
            Some(serde_json::Value::from(list).to_string())
        }
    };
    if let Some(r) = input.rate_limit_per_sec {
        if !(1..=100_000).contains(&r) {
            return Err(AppError::bad_input(format!(
                "rate_limit_per_sec: expected a whole number from 1 to 100000, got {r}"
            )));
        }
    }
    ep.url = input.url;
    ep.description = description;
    ep.signature_scheme = scheme;
    ep.signature_header = header;
    ep.signature_prefix = prefix;
    ep.headers = headers;
    ep.header_names = header_names;
    ep.event_types = event_types;
    ep.rate_limit_per_sec = input.rate_limit_per_sec;
    Ok(())
}

/// The header and prefix stored for a scheme: none for `standard`; for
/// `hex`, the ones given or the defaults, checked.
fn signature_format(
    scheme: SignatureScheme,
    header: Option<&str>,
    prefix: Option<&str>,
) -> AppResult<(Option<String>, Option<String>)> {
    if scheme == SignatureScheme::Standard {
        if header.is_some() || prefix.is_some() {
            return Err(AppError::bad_input(
                "signature_header/signature_prefix: only used with signature_scheme \"hex\"",
            ));
        }
        return Ok((None, None));
    }
    let format = HexFormat::new(header, prefix);
    let header = format.header.to_ascii_lowercase();
    if HeaderName::from_bytes(header.as_bytes()).is_err()
        || RESERVED_HEADERS.contains(&header.as_str())
    {
        return Err(AppError::bad_input(format!(
            "signature_header: expected an HTTP header name such as \"X-Webhook-Signature\" \
             (not one payhook sets itself), got {header:?}"
        )));
    }
    let prefix = format.prefix.to_string();
    if prefix.len() > 64 || HeaderValue::from_str(&prefix).is_err() {
        return Err(AppError::bad_input(
            "signature_prefix: expected up to 64 printable characters such as \"sha256=\" or \"\"",
        ));
    }
    Ok((Some(header), Some(prefix)))
}

/// Extra static headers as stored (a JSON object, sealed in a `Secret`):
/// names that may be set, printable values.
fn extra_headers(
    given: BTreeMap<String, String>,
    signature_header: Option<&str>,
) -> AppResult<Secret> {
    let mut headers = serde_json::Map::new();
    for (k, v) in given {
        let lower = k.to_ascii_lowercase();
        if HeaderName::from_bytes(k.as_bytes()).is_err()
            || RESERVED_HEADERS.contains(&lower.as_str())
            || Some(lower.as_str()) == signature_header
        {
            return Err(AppError::bad_input(format!(
                "headers: {k:?} is not a header name a merchant may set (reserved: {})",
                RESERVED_HEADERS.join(", ")
            )));
        }
        if HeaderValue::from_str(&v).is_err() {
            return Err(AppError::bad_input(format!(
                "headers.{k}: expected a printable header value"
            )));
        }
        headers.insert(k, serde_json::Value::String(v));
    }
    Ok(Secret::new(serde_json::Value::Object(headers).to_string()))
}

/// The overlap of a rotation: "24h" when not given, at most 30 days.
pub fn parse_overlap(raw: Option<&str>) -> AppResult<Duration> {
    let overlap = match raw {
        None => Duration::from_secs(24 * 3600),
        Some(raw) => crate::config::parse_duration(raw)
            .map_err(|e| AppError::bad_input(format!("overlap: {e}")))?,
    };
    if overlap > Duration::from_secs(30 * 86400) {
        return Err(AppError::bad_input(
            "overlap: expected at most 30 days, such as \"24h\"",
        ));
    }
    Ok(overlap)
}

/// How a change is written in the audit log: the endpoint routes write
/// `endpoint.*` on the endpoint; the merchant-level ones of the one-URL API
/// `merchant.*` on the merchant.
#[derive(Debug, Clone, Copy)]
pub enum AuditAs<'a> {
    Endpoint,
    Merchant(&'a MerchantId),
}

impl AuditAs<'_> {
    async fn record(
        self,
        store: &Store,
        verb: &str,
        id: &EndpointId,
        mut summary: serde_json::Value,
    ) {
        match self {
            AuditAs::Endpoint => {
                let action = format!("endpoint.{verb}");
                audit::record(store, &action, Some(id.as_str()), summary).await
            }
            AuditAs::Merchant(m) => {
                summary["endpoint_id"] = serde_json::json!(id);
                let action = format!("merchant.{verb}");
                audit::record(store, &action, Some(m.as_str()), summary).await
            }
        }
    }
}

/// New secret; the old one keeps signing (scheme `standard`) for `overlap`.
pub async fn rotate_secret(
    store: &Store,
    id: &EndpointId,
    overlap: Duration,
    audit_as: AuditAs<'_>,
) -> AppResult<EndpointWithSecret> {
    let secret = ids::new_secret();
    let sealed = store.keys()?.seal(&secret)?;
    let until = now_ms() + overlap.as_millis() as i64;
    endpoints::rotate_secret(store, id, &sealed, until).await?;
    let summary = serde_json::json!({"overlap_secs": overlap.as_secs()});
    audit_as.record(store, "rotate_secret", id, summary).await;
    Ok(EndpointWithSecret {
        endpoint: endpoints::get(store, id).await?,
        secret,
    })
}

/// The endpoint's signing secrets (`GET /v1/endpoints/{id}/secret`).
#[derive(Debug, Serialize)]
pub struct Revealed {
    pub endpoint_id: EndpointId,
    #[serde(serialize_with = "show_secret")]
    pub secret: Secret,
    /// The previous secret while it still signs (after a rotation).
    #[serde(serialize_with = "show_optional_secret")]
    pub previous_secret: Option<Secret>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub previous_secret_expires_at: Option<i64>,
}

fn show_optional_secret<S: serde::Serializer>(
    secret: &Option<Secret>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => s.serialize_str(v.expose()),
        None => s.serialize_none(),
    }
}

/// Shows the endpoint's secrets; the audit log records who looked.
pub async fn reveal_secret(store: &Store, id: &EndpointId) -> AppResult<Revealed> {
    let ep = endpoints::get(store, id).await?;
    let keys = store.keys()?;
    let live = ep
        .previous_secret_expires_at
        .is_some_and(|until| until > now_ms());
    let revealed = Revealed {
        endpoint_id: ep.id.clone(),
        secret: keys.open(&ep.secret)?,
        previous_secret: match (&ep.previous_secret, live) {
            (Some(p), true) => Some(keys.open(p)?),
            _ => None,
        },
        previous_secret_expires_at: ep.previous_secret_expires_at.filter(|_| live),
    };
    audit::record(
        store,
        "endpoint.reveal_secret",
        Some(id.as_str()),
        serde_json::json!({}),
    )
    .await;
    Ok(revealed)
}

/// Queues a `webhook.test` event to this endpoint; returns the event id.
pub async fn send_test(
    store: &Store,
    id: &EndpointId,
    audit_as: AuditAs<'_>,
) -> AppResult<(EventId, Option<DeliveryId>)> {
    let ep = endpoints::get(store, id).await?;
    let target = Target {
        id: ep.id.clone(),
        url: ep.url.clone(),
        event_types: None,
        status: ep.status,
    };
    let mut tx = store.begin_write().await?;
    let sent = store::events::emit_test(&mut tx, &ep.merchant_id, &target, now_ms()).await?;
    store.commit(tx, true).await?;
    let summary = serde_json::json!({"event_id": sent.0, "delivery_id": sent.1});
    audit_as.record(store, "test", id, summary).await;
    Ok(sent)
}

pub async fn enable(store: &Store, id: &EndpointId, audit_as: AuditAs<'_>) -> AppResult<Endpoint> {
    endpoints::enable(store, id).await?;
    audit_as
        .record(store, "enable", id, serde_json::json!({}))
        .await;
    endpoints::get(store, id).await
}

/// Disables by hand: nothing is sent until `enable`; pending deliveries wait.
pub async fn disable(store: &Store, id: &EndpointId) -> AppResult<Endpoint> {
    let reason = format!("disabled by hand at {}", crate::time::rfc3339(now_ms()));
    endpoints::disable(store, id, &reason, now_ms()).await?;
    let none = serde_json::json!({});
    audit::record(store, "endpoint.disable", Some(id.as_str()), none).await;
    endpoints::get(store, id).await
}

/// Deletes the endpoint; its pending deliveries go to the DLQ. Returns how
/// many.
pub async fn delete(store: &Store, id: &EndpointId) -> AppResult<u64> {
    let dead = endpoints::delete(store, id, now_ms()).await?;
    let summary = serde_json::json!({"dead_lettered": dead});
    audit::record(store, "endpoint.delete", Some(id.as_str()), summary).await;
    Ok(dead)
}

/// Resubmits every dead letter of the endpoint that died in
/// `[since, until)`; returns how many.
pub async fn recover(
    store: &Store,
    id: &EndpointId,
    since: i64,
    until: Option<i64>,
) -> AppResult<u64> {
    endpoints::get(store, id).await?;
    let filter = dead_letters::Filter {
        endpoint_id: Some(id.clone()),
        since: Some(since),
        until,
        ..Default::default()
    };
    dlq::resubmit_matching(store, &filter, "endpoint.recover", Some(id.as_str())).await
}

/// An endpoint's settings for the audit log: no secret, header names only,
/// the URL as far as it may be shown.
pub(crate) fn settings_summary(ep: &Endpoint) -> serde_json::Value {
    serde_json::json!({
        "merchant_id": ep.merchant_id,
        "url": crate::urls::redact_url(&ep.url),
        "description": ep.description,
        "signature_scheme": ep.signature_scheme,
        "headers": ep.header_names,
        "event_types": ep.event_types.as_deref().and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok()),
        "rate_limit_per_sec": ep.rate_limit_per_sec,
    })
}

/// `GET /v1/endpoints/{id}/health`.
#[derive(Debug, Serialize)]
pub struct Health {
    pub endpoint_id: EndpointId,
    pub status: EndpointStatus,
    /// `closed`; `open` after `circuit.failure_threshold` failures in a row
    /// (attempts are held back); `half_open` once `circuit.cooldown` has
    /// passed since the last failure (the next attempt is a probe). Read
    /// from the database, so the same for every worker.
    pub circuit: &'static str,
    pub failures_in_a_row: i64,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub last_success_at: Option<i64>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub last_failure_at: Option<i64>,
    /// Failing without a success since (`circuit.disable_after` counts from here).
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub failing_since: Option<i64>,
    pub attempts_24h: i64,
    pub succeeded_24h: i64,
    /// Succeeded over attempts in the last 24 h, to 4 places (null without attempts).
    pub success_ratio_24h: Option<f64>,
}

pub async fn health(store: &Store, cfg: &Config, id: &EndpointId) -> AppResult<Health> {
    let ep = endpoints::get(store, id).await?;
    let now = now_ms();
    let key = crate::urls::endpoint_key_of(&ep.url);
    let row = store::endpoint_health::of_endpoint(store, id, &key, now - 86_400_000).await?;
    let threshold = i64::from(cfg.circuit.failure_threshold.max(1));
    let cooldown = cfg.circuit.cooldown.0.as_millis() as i64;
    let circuit = if row.failures < threshold {
        "closed"
    } else if row.last_failure_at.is_some_and(|t| now - t < cooldown) {
        "open"
    } else {
        "half_open"
    };
    Ok(Health {
        endpoint_id: ep.id,
        status: ep.status,
        circuit,
        failures_in_a_row: row.failures,
        last_success_at: row.last_success_at,
        last_failure_at: row.last_failure_at,
        failing_since: row.failing_since,
        attempts_24h: row.attempts,
        succeeded_24h: row.succeeded,
        success_ratio_24h: (row.attempts > 0)
            .then(|| (row.succeeded as f64 / row.attempts as f64 * 10_000.0).round() / 10_000.0),
    })
}
