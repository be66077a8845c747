//! Merchant operations: create (validates and issues the secret), rotate the
//! secret, enable, send a test event.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::delivery::signer::HexFormat;
use crate::delivery::target::{self, TargetPolicy};
use crate::domain::{MerchantStatus, SignatureScheme};
use crate::error::{AppError, AppResult};
use crate::events::EventType;
use crate::ids::{self, DeliveryId, EventId, MerchantId, Secret};
use crate::sealing::KeyRing;
use crate::store::merchants::{self, Merchant};
use crate::store::{self, audit, Store};
use crate::time::now_ms;

/// Headers payhook sets itself; a merchant's extra headers may not replace them.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "user-agent",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

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

/// A merchant with its secret: shown only at creation and rotation.
#[derive(Debug, Serialize)]
pub struct WithSecret {
    #[serde(flatten)]
    pub merchant: Merchant,
    #[serde(serialize_with = "show_secret")]
    pub secret: Secret,
}

/// The one place a signing secret is serialized: the answer to its creation
/// or rotation.
fn show_secret<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

pub fn target_policy(cfg: &Config) -> TargetPolicy {
    TargetPolicy {
        allow_http: cfg.delivery.allow_http,
        allow_private_targets: cfg.delivery.allow_private_targets,
    }
}

pub async fn create(store: &Store, cfg: &Config, input: NewMerchant) -> AppResult<WithSecret> {
    let keys = store.keys()?;
    let secret = ids::new_secret();
    let mut m = Merchant {
        id: MerchantId::new(),
        name: String::new(),
        webhook_url: String::new(),
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
        status: MerchantStatus::Active,
        disabled_reason: None,
        created_at: now_ms(),
    };
    apply(&mut m, input, cfg, keys).await?;
    merchants::insert(store, &m).await?;
    audit::record(
        store,
        "merchant.create",
        Some(m.id.as_str()),
        settings_summary(&m),
    )
    .await;
    Ok(WithSecret {
        merchant: m,
        secret,
    })
}

/// A partial update (`PATCH`): absent fields stay; `null` clears the
/// optional ones (`event_types: null` = all events again).
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

/// Tells "field absent" (`None`) from "field null" (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub async fn update(
    store: &Store,
    cfg: &Config,
    id: &MerchantId,
    patch: MerchantPatch,
) -> AppResult<Merchant> {
    let mut m = merchants::get(store, id).await?;
    let scheme = match patch.signature_scheme.as_deref() {
        Some(raw) => SignatureScheme::parse("signature_scheme", raw)?,
        None => m.signature_scheme,
    };
    let keep = scheme == m.signature_scheme;
    let input = NewMerchant {
        name: patch.name.unwrap_or_else(|| m.name.clone()),
        webhook_url: patch.webhook_url.unwrap_or_else(|| m.webhook_url.clone()),
        signature_header: patch.signature_header.unwrap_or_else(|| {
            if keep {
                m.signature_header.clone()
            } else {
                None
            }
        }),
        signature_prefix: patch.signature_prefix.unwrap_or_else(|| {
            if keep {
                m.signature_prefix.clone()
            } else {
                None
            }
        }),
        signature_scheme: Some(scheme.as_str().to_string()),
        headers: match patch.headers {
            Some(h) => Some(h),
            None => Some(
                merchants::open_headers(store.keys()?, &m.headers)?
                    .into_iter()
                    .collect(),
            ),
        },
        event_types: patch.event_types.unwrap_or_else(|| {
            m.event_types
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok())
        }),
        rate_limit_per_sec: patch.rate_limit_per_sec.unwrap_or(m.rate_limit_per_sec),
    };
    apply(&mut m, input, cfg, store.keys()?).await?;
    merchants::update(store, &m).await?;
    audit::record(
        store,
        "merchant.update",
        Some(m.id.as_str()),
        settings_summary(&m),
    )
    .await;
    Ok(m)
}

/// Validates `input` and writes it into `m`; errors name the field.
async fn apply(
    m: &mut Merchant,
    input: NewMerchant,
    cfg: &Config,
    keys: &KeyRing,
) -> AppResult<()> {
    let name = input.name.trim();
    super::text("name", name, 200)?;
    target::vet_url_resolved("webhook_url", &input.webhook_url, target_policy(cfg)).await?;
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
    m.name = name.to_string();
    m.webhook_url = input.webhook_url;
    m.signature_scheme = scheme;
    m.signature_header = header;
    m.signature_prefix = prefix;
    m.headers = headers;
    m.header_names = header_names;
    m.event_types = event_types;
    m.rate_limit_per_sec = input.rate_limit_per_sec;
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
/// names a merchant may set, printable values.
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

/// New secret; the old one keeps signing (scheme `standard`) for `overlap`.
pub async fn rotate_secret(
    store: &Store,
    id: &MerchantId,
    overlap: Duration,
) -> AppResult<WithSecret> {
    if overlap > Duration::from_secs(30 * 86400) {
        return Err(AppError::bad_input(
            "overlap: expected at most 30 days, such as \"24h\"",
        ));
    }
    let secret = ids::new_secret();
    let sealed = store.keys()?.seal(&secret)?;
    let until = now_ms() + overlap.as_millis() as i64;
    merchants::rotate_secret(store, id, &sealed, until).await?;
    let summary = serde_json::json!({"overlap_secs": overlap.as_secs()});
    audit::record(store, "merchant.rotate_secret", Some(id.as_str()), summary).await;
    let m = merchants::get(store, id).await?;
    Ok(WithSecret {
        merchant: m,
        secret,
    })
}

pub async fn enable(store: &Store, id: &MerchantId) -> AppResult<Merchant> {
    merchants::enable(store, id).await?;
    audit::record(
        store,
        "merchant.enable",
        Some(id.as_str()),
        serde_json::json!({}),
    )
    .await;
    merchants::get(store, id).await
}

/// Queues a `webhook.test` event to the merchant's URL; returns the event id.
pub async fn send_test(store: &Store, id: &MerchantId) -> AppResult<(EventId, Option<DeliveryId>)> {
    let m = merchants::get(store, id).await?;
    let mut tx = store.begin_write().await?;
    let sent = store::events::emit_test(&mut tx, &m, now_ms()).await?;
    store.commit(tx, true).await?;
    let summary = serde_json::json!({"event_id": sent.0, "delivery_id": sent.1});
    audit::record(store, "merchant.test", Some(id.as_str()), summary).await;
    Ok(sent)
}

/// A merchant's settings for the audit log: no secret, header names only,
/// the URL as far as it may be shown.
fn settings_summary(m: &Merchant) -> serde_json::Value {
    serde_json::json!({
        "name": m.name,
        "webhook_url": crate::urls::redact_url(&m.webhook_url),
        "signature_scheme": m.signature_scheme,
        "headers": m.header_names,
        "event_types": m.event_types.as_deref().and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok()),
        "rate_limit_per_sec": m.rate_limit_per_sec,
    })
}
