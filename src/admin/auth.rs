//! `Authorization: Bearer <token>`: the admin token (compared in constant
//! time) or a merchant API key (looked up by its hash on every request, so a
//! revocation takes effect at once in every process). The request then
//! carries its [`Access`], and its audit rows its actor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::access::Access;
use super::ApiError;
use crate::error::{AppError, ErrorKind};
use crate::store::{api_keys, Store};

/// A key's `last_used_at` is written at most this often (not per request).
const TOUCH_EVERY_MS: i64 = 60_000;

#[derive(Clone)]
pub struct Auth {
    token: Arc<Vec<u8>>,
    store: Store,
    touched: Arc<Mutex<HashMap<String, i64>>>,
}

impl Auth {
    pub fn new(token: &str, store: Store) -> Self {
        Auth {
            token: Arc::new(token.as_bytes().to_vec()),
            store,
            touched: Arc::default(),
        }
    }

    /// A fingerprint of the admin token (not the token): console sessions
    /// opened with it end when the token changes.
    pub(crate) fn admin_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"payhook console session\0");
        h.update(self.token.as_slice());
        hex::encode(h.finalize())
    }

    pub(crate) async fn access(&self, given: &str) -> Result<Access, ApiError> {
        // `ct_eq` compares in constant time for equal lengths; a length
        // mismatch answers at once, which reveals only the length.
        if bool::from(given.as_bytes().ct_eq(self.token.as_slice())) {
            return Ok(Access::Admin);
        }
        if given.starts_with(crate::ops::api_keys::PREFIX) {
            let hash = crate::ops::api_keys::hash(given);
            let found = api_keys::find_by_hash(&self.store, &hash).await?;
            if let Some(key) = found.filter(|k| k.revoked_at.is_none()) {
                self.touch(&key.id);
                return Ok(Access::Merchant {
                    key_id: key.id,
                    merchant_id: key.merchant_id,
                });
            }
        }
        Err(ApiError(AppError::new(
            ErrorKind::Unauthorized,
            "the bearer token is not valid",
        )))
    }

    /// Records a key's use, at most once a minute per key and process.
    fn touch(&self, key_id: &str) {
        let now = crate::time::now_ms();
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let due = touched
            .get(key_id)
            .is_none_or(|t| now - t >= TOUCH_EVERY_MS);
        if due {
            touched.insert(key_id.to_string(), now);
            let (store, id) = (self.store.clone(), key_id.to_string());
            tokio::spawn(async move {
                let _ = api_keys::touch(&store, &id, now).await;
            });
        }
    }
}

pub async fn require_bearer(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_string());
    let Some(given) = given else {
        return ApiError(AppError::new(
            ErrorKind::Unauthorized,
            "missing Authorization: Bearer <admin.token or API key> header",
        ))
        .into_response();
    };
    match auth.access(&given).await {
        Ok(access) => {
            let actor = access.actor();
            req.extensions_mut().insert(access);
            crate::store::audit::ACTOR.scope(actor, next.run(req)).await
        }
        Err(e) => e.into_response(),
    }
}
