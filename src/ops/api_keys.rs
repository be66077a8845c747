//! Merchant API keys: issue one (shown once, stored as a hash), list,
//! revoke; and find the key a request presents.

use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};
use crate::ids::MerchantId;
use crate::store::api_keys::{self, ApiKey};
use crate::store::{audit, merchants, Store};
use crate::time::now_ms;

/// What every key starts with (so the auth layer tells keys from the admin
/// token, and scanners of leaked secrets can find them).
pub const PREFIX: &str = "phk_";

/// A key with its secret: shown only at creation.
#[derive(Debug, Serialize)]
pub struct NewKey {
    #[serde(flatten)]
    pub key: ApiKey,
    #[serde(rename = "key", serialize_with = "show")]
    pub secret: crate::ids::Secret,
}

fn show<S: serde::Serializer>(s: &crate::ids::Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

/// The stored form of a key: hex SHA-256.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub async fn create(store: &Store, merchant: &MerchantId, name: &str) -> AppResult<NewKey> {
    super::text("name", name, 200)?;
    merchants::get(store, merchant).await?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let key = ApiKey {
        id: crate::ids::new_id("key_"),
        merchant_id: merchant.clone(),
        name: name.trim().to_string(),
        created_at: now_ms(),
        last_used_at: None,
        revoked_at: None,
    };
    api_keys::insert(store, &key, &hash(&secret)).await?;
    let summary = serde_json::json!({"merchant_id": merchant, "name": key.name});
    audit::record(store, "api_key.create", Some(&key.id), summary).await;
    Ok(NewKey {
        key,
        secret: crate::ids::Secret::new(secret),
    })
}

/// Revokes a key; refusing it takes effect at once in every process (each
/// request looks its key up).
pub async fn revoke(store: &Store, id: &str) -> AppResult<ApiKey> {
    if !api_keys::revoke(store, id, now_ms()).await? {
        let key = api_keys::get(store, id).await?;
        return Err(AppError::conflict(format!(
            "api key {} was already revoked",
            key.id
        )));
    }
    let key = api_keys::get(store, id).await?;
    let summary = serde_json::json!({"merchant_id": key.merchant_id});
    audit::record(store, "api_key.revoke", Some(id), summary).await;
    Ok(key)
}
