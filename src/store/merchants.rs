//! The `merchants` table: endpoints, secrets, signing scheme, filters.

use std::fmt;

use serde::Serialize;

use super::{Page, Store};
use crate::error::{AppError, AppResult};

#[derive(Clone, sqlx::FromRow)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub webhook_url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub signature_scheme: String,
    pub signature_header: Option<String>,
    pub signature_prefix: Option<String>,
    /// JSON object of extra static headers; the values are secrets.
    pub headers: String,
    /// JSON array of subscribed event types; `None` means all.
    pub event_types: Option<String>,
    pub rate_limit_per_sec: Option<i64>,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
}

// Secrets and header values never reach a log line through `{:?}`.
impl fmt::Debug for Merchant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merchant")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("webhook_url", &self.webhook_url)
            .field("secret", &"[redacted]")
            .field("signature_scheme", &self.signature_scheme)
            .field("headers", &"[redacted]")
            .field("status", &self.status)
            .finish()
    }
}

/// What a merchant looks like outside: no secret, header names only.
#[derive(Debug, Serialize)]
pub struct MerchantView {
    pub id: String,
    pub name: String,
    pub webhook_url: String,
    pub signature_scheme: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_prefix: Option<String>,
    /// Names of the extra headers; their values are secrets and stay hidden.
    pub headers: Vec<String>,
    pub event_types: Option<Vec<String>>,
    pub rate_limit_per_sec: Option<i64>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
}

impl Merchant {
    pub fn view(&self) -> MerchantView {
        let headers: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.headers).unwrap_or_default();
        let (header, prefix) = if self.signature_scheme == "hex" {
            (self.signature_header.clone(), self.signature_prefix.clone())
        } else {
            (None, None)
        };
        MerchantView {
            id: self.id.clone(),
            name: self.name.clone(),
            webhook_url: self.webhook_url.clone(),
            signature_scheme: self.signature_scheme.clone(),
            signature_header: header,
            signature_prefix: prefix,
            headers: headers.keys().cloned().collect(),
            event_types: self
                .event_types
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            rate_limit_per_sec: self.rate_limit_per_sec,
            status: self.status.clone(),
            disabled_reason: self.disabled_reason.clone(),
            previous_secret_expires_at: self.previous_secret_expires_at.map(crate::time::rfc3339),
            created_at: crate::time::rfc3339(self.created_at),
        }
    }

    /// Whether this merchant wants events of `kind` (`webhook.test` always).
    pub fn subscribes_to(&self, kind: &str) -> bool {
        if kind == "webhook.test" {
            return true;
        }
        match &self.event_types {
            None => true,
            Some(list) => serde_json::from_str::<Vec<String>>(list)
                .map(|l| l.iter().any(|t| t == kind))
                .unwrap_or(true),
        }
    }
}

macro_rules! columns {
    () => {
        "id, name, webhook_url, secret, previous_secret, previous_secret_expires_at, \
            signature_scheme, signature_header, signature_prefix, headers, event_types, rate_limit_per_sec, \
            status, disabled_reason, created_at"
    };
}

pub async fn insert(store: &Store, m: &Merchant) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO merchants (id, name, webhook_url, secret, previous_secret, previous_secret_expires_at, \
         signature_scheme, signature_header, signature_prefix, headers, event_types, rate_limit_per_sec, \
         status, disabled_reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&m.id)
    .bind(&m.name)
    .bind(&m.webhook_url)
    .bind(&m.secret)
    .bind(&m.previous_secret)
    .bind(m.previous_secret_expires_at)
    .bind(&m.signature_scheme)
    .bind(&m.signature_header)
    .bind(&m.signature_prefix)
    .bind(&m.headers)
    .bind(&m.event_types)
    .bind(m.rate_limit_per_sec)
    .bind(&m.status)
    .bind(&m.disabled_reason)
    .bind(m.created_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

pub async fn find(store: &Store, id: &str) -> AppResult<Option<Merchant>> {
    Ok(sqlx::query_as::<_, Merchant>(concat!(
        "SELECT ",
        columns!(),
        " FROM merchants WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(store.pool())
    .await?)
}

pub async fn get(store: &Store, id: &str) -> AppResult<Merchant> {
    find(store, id)
        .await?
        .ok_or_else(|| AppError::not_found("merchant", id))
}

pub async fn list(store: &Store, page: &Page) -> AppResult<Vec<Merchant>> {
    Ok(sqlx::query_as::<_, Merchant>(concat!(
        "SELECT ",
        columns!(),
        " FROM merchants WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    ))
    .bind(&page.cursor)
    .bind(page.limit)
    .fetch_all(store.pool())
    .await?)
}

/// Replaces the current secret; the old one keeps signing until `expires_at`.
pub async fn rotate_secret(
    store: &Store,
    id: &str,
    new_secret: &str,
    expires_at: i64,
) -> AppResult<()> {
    let done = sqlx::query(
        "UPDATE merchants SET previous_secret = secret, previous_secret_expires_at = $3, secret = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(new_secret)
    .bind(expires_at)
    .execute(store.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found("merchant", id));
    }
    Ok(())
}

pub async fn set_status(
    store: &Store,
    id: &str,
    status: &str,
    reason: Option<&str>,
) -> AppResult<()> {
    let done = sqlx::query("UPDATE merchants SET status = $2, disabled_reason = $3 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(reason)
        .execute(store.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found("merchant", id));
    }
    Ok(())
}
