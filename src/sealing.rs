//! Secrets at rest: signing secrets and extra header values are stored
//! sealed with XChaCha20-Poly1305 under `secrets.key`, never as given.
//!
//! A sealed value is text: `sealed:v1:<key id>:<base64 of nonce ‖ ciphertext>`.
//! The key id (the first 8 hex digits of the key's SHA-256) names the key
//! that sealed the row, so `secrets.previous_keys` still open rows sealed
//! before a key rotation, and `payhook secrets rotate-key` re-seals them
//! under the current key. The nonce is random (24 bytes: no risk of reuse).

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};
use crate::ids::Secret;

const PREFIX: &str = "sealed:v1:";

/// A secret as stored: sealed text (or, in a row written before sealing
/// existed, the plain value, until `Store::migrate` seals it). Opened only
/// with a [`KeyRing`]; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct Sealed(String);

impl Sealed {
    /// The text as stored (for binding it back unchanged).
    pub fn as_stored(&self) -> &str {
        &self.0
    }

    /// Whether it is sealed (under any key), not a legacy plain value.
    pub fn is_sealed(&self) -> bool {
        self.0.starts_with(PREFIX)
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed([redacted])")
    }
}

/// One 32-byte key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn from_base64(field: &str, raw: &str) -> AppResult<Key> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                AppError::config(format!(
                    "{field}: expected base64 of 32 random bytes (`payhook init` writes one; \
                     or `head -c 32 /dev/urandom | base64`)"
                ))
            })?;
        let id = hex::encode(&Sha256::digest(&bytes)[..4]);
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| AppError::config(format!("{field}: expected a 32-byte key")))?;
        Ok(Key { id, cipher })
    }
}

/// The current key and the previous ones (read only).
#[derive(Clone)]
pub struct KeyRing {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.id)
            .field("previous", &self.previous.len())
            .finish()
    }
}

impl KeyRing {
    /// From `secrets.key` and `secrets.previous_keys` (base64 each).
    pub fn new(current: &Secret, previous: &[Secret]) -> AppResult<KeyRing> {
        let current = Key::from_base64("secrets.key", current.expose())?;
        let previous = previous
            .iter()
            .enumerate()
            .map(|(i, k)| Key::from_base64(&format!("secrets.previous_keys[{i}]"), k.expose()))
            .collect::<AppResult<_>>()?;
        Ok(KeyRing { current, previous })
    }

    /// A fresh random key, base64 (for `payhook init`).
    pub fn generate_key() -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// The id of the key new rows are sealed with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals a secret under the current key.
    pub fn seal(&self, plain: &Secret) -> AppResult<Sealed> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .cipher
            .encrypt(&nonce, plain.expose().as_bytes())
            .map_err(|_| AppError::internal("sealing a secret failed"))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        Ok(Sealed(format!("{PREFIX}{}:{b64}", self.current.id)))
    }

    /// Opens a stored value with whichever key sealed it. A value that is
    /// not sealed (written before sealing existed) is returned as it is;
    /// `Store::migrate` seals such rows.
    pub fn open(&self, stored: &Sealed) -> AppResult<Secret> {
        let stored = stored.as_stored();
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Secret::new(stored));
        };
        let (id, b64) = rest
            .split_once(':')
            .ok_or_else(|| AppError::internal("a sealed value is malformed"))?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| {
                AppError::internal(format!(
                    "a secret is sealed with key {id}, which is neither secrets.key nor one of \
                     secrets.previous_keys"
                ))
            })?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .filter(|b| b.len() > 24)
            .ok_or_else(|| AppError::internal("a sealed value is malformed"))?;
        let (nonce, sealed) = blob.split_at(24);
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| {
                AppError::internal(format!("a secret sealed with key {id} does not open"))
            })?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| AppError::internal("a sealed value is not text"))
    }

    /// Whether a stored value is sealed under the current key already.
    pub fn is_current(&self, stored: &Sealed) -> bool {
        stored
            .as_stored()
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &str, previous: &[&str]) -> KeyRing {
        let prev: Vec<Secret> = previous.iter().map(|k| Secret::new(*k)).collect();
        KeyRing::new(&Secret::new(current), &prev).unwrap()
    }

    #[test]
    fn sealed_values_open_under_their_key_and_show_nothing() {
        let (k1, k2) = (KeyRing::generate_key(), KeyRing::generate_key());
        let old = ring(&k1, &[]);
        let secret = Secret::new("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEy");
        let sealed = old.seal(&secret).unwrap();
        let text = sealed.as_stored();
        assert!(text.starts_with("sealed:v1:") && !text.contains("c2VjcmV0"));
        assert_eq!(format!("{sealed:?}"), "Sealed([redacted])");
        assert_ne!(
            sealed,
            old.seal(&secret).unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(old.open(&sealed).unwrap(), secret);
        // After a key rotation the old key still opens it; without it, a
        // clear error names the key id.
        let rotated = ring(&k2, &[&k1]);
        assert_eq!(rotated.open(&sealed).unwrap(), secret);
        assert!(!rotated.is_current(&sealed));
        assert!(rotated.is_current(&rotated.seal(&secret).unwrap()));
        let e = ring(&k2, &[]).open(&sealed).unwrap_err();
        assert!(e.message.contains(old.current_id()), "{}", e.message);
        // Tampering is detected.
        let mut bad = text.to_string();
        let flipped = if bad.ends_with('A') { 'B' } else { 'A' };
        bad.pop();
        bad.push(flipped);
        assert!(old.open(&Sealed(bad)).is_err());
        // Plain legacy values pass through (migration seals them).
        let legacy = Sealed("whsec_x".into());
        assert_eq!(old.open(&legacy).unwrap(), Secret::new("whsec_x"));
        assert!(!old.is_current(&legacy));
    }

    #[test]
    fn a_bad_key_is_a_config_error_that_does_not_echo_it() {
        let e = KeyRing::new(&Secret::new("c2hvcnQ="), &[]).unwrap_err();
        assert!(e.message.starts_with("secrets.key:") && !e.message.contains("c2hvcnQ"));
    }
}
