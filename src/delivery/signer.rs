//! Signatures merchants verify.
//!
//! - `standard` (default): Standard Webhooks — `webhook-signature:
//!   v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key
//!   is the base64-decoded part of `whsec_…`. During a secret rotation both
//!   secrets sign, space-separated, newest first.
//! - `hex`: `<header>: <prefix><hex HMAC-SHA256(secret UTF-8 bytes, body)>`,
//!   signed with the current secret only.
//!
//! `verify` (the CLI command merchants use to check their setup) calls the
//! same functions, so signing and verifying cannot drift apart.

use std::fmt;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::AppError;

type HmacSha256 = Hmac<Sha256>;

/// Where a `hex` signature goes and what precedes it: a merchant's
/// settings, or the defaults (`x-payhook-signature: sha256=…`). The one
/// place the defaults live: signing, `payhook verify` and merchant
/// validation all read them here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexFormat<'a> {
    pub header: &'a str,
    pub prefix: &'a str,
}

impl<'a> HexFormat<'a> {
    pub const DEFAULT: HexFormat<'static> = HexFormat {
        header: "x-payhook-signature",
        prefix: "sha256=",
    };

    pub fn new(header: Option<&'a str>, prefix: Option<&'a str>) -> Self {
        HexFormat {
            header: header.unwrap_or(Self::DEFAULT.header),
            prefix: prefix.unwrap_or(Self::DEFAULT.prefix),
        }
    }
}

/// The HMAC key of a `whsec_…` secret: its base64 part, decoded.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, AppError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| {
            AppError::bad_input(
                "secret: expected whsec_ followed by base64 (as payhook issues them)",
            )
        })
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(key).expect("hmac takes any key length")
}

/// `v1,<base64>` for one key.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    )
}

/// The `webhook-signature` header value for the active keys (newest first).
pub fn standard_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| standard_signature(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `<prefix><hex HMAC-SHA256(secret bytes, body)>`.
pub fn hex_signature(secret: &str, prefix: &str, body: &[u8]) -> String {
    let mut m = mac(secret.as_bytes());
    m.update(body);
    format!("{prefix}{}", hex::encode(m.finalize().into_bytes()))
}

#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    Missing(&'static str),
    BadTimestamp,
    TooOld { skew_secs: i64 },
    NoMatch,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Missing(h) => write!(f, "missing header {h}"),
            VerifyError::BadTimestamp => f.write_str("webhook-timestamp: expected unix seconds"),
            VerifyError::TooOld { skew_secs } => {
                write!(
                    f,
                    "webhook-timestamp is {skew_secs}s away from now (outside the tolerance)"
                )
            }
            VerifyError::NoMatch => f.write_str("no signature matches this secret and body"),
        }
    }
}

/// Checks a Standard Webhooks signature header against one secret.
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    tolerance_secs: Option<i64>,
    now_secs: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if let Some(tol) = tolerance_secs {
        if (now_secs - ts).abs() > tol {
            return Err(VerifyError::TooOld {
                skew_secs: now_secs - ts,
            });
        }
    }
    let key = standard_key(secret).map_err(|_| VerifyError::NoMatch)?;
    let mut msg = Vec::with_capacity(id.len() + body.len() + 24);
    msg.extend_from_slice(id.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(ts.to_string().as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    for sig in signature_header.split_whitespace() {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        let mut m = mac(&key);
        m.update(&msg);
        if m.verify_slice(&raw).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

/// Checks a `hex` scheme header value (`prefix` then hex) in constant time.
pub fn verify_hex(
    secret: &str,
    prefix: &str,
    header_value: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let hex_part = header_value
        .trim()
        .strip_prefix(prefix)
        .ok_or(VerifyError::NoMatch)?;
    let raw = hex::decode(hex_part).map_err(|_| VerifyError::NoMatch)?;
    let mut m = mac(secret.as_bytes());
    m.update(body);
    m.verify_slice(&raw).map_err(|_| VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_signature_matches_the_spec_example() {
        // The example of the Standard Webhooks specification.
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = standard_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verify_accepts_either_of_two_signatures_and_rejects_tampering() {
        let a = crate::ids::new_secret();
        let b = crate::ids::new_secret();
        let (a, b) = (a.expose(), b.expose());
        let keys = vec![standard_key(a).unwrap(), standard_key(b).unwrap()];
        let header = standard_header(&keys, "evt_1", 100, b"{}");
        assert!(verify_standard(a, "evt_1", "100", &header, b"{}", None, 100).is_ok());
        assert!(verify_standard(b, "evt_1", "100", &header, b"{}", None, 100).is_ok());
        assert_eq!(
            verify_standard(a, "evt_1", "100", &header, b"{ }", None, 100),
            Err(VerifyError::NoMatch)
        );
        assert!(matches!(
            verify_standard(a, "evt_1", "100", &header, b"{}", Some(300), 1000),
            Err(VerifyError::TooOld { .. })
        ));
    }

    #[test]
    fn hex_scheme_signs_body_with_secret_bytes() {
        let sig = hex_signature("topsecret", "sha256=", b"hello");
        // Independently computed with Python's hmac module.
        assert_eq!(
            sig,
            "sha256=ed76fd36523b8becda5a3b36d0e3737e8ae5111f55e26c7c3a455a3ce29636d2"
        );
        assert!(verify_hex("topsecret", "sha256=", &sig, b"hello").is_ok());
        assert!(verify_hex("other", "sha256=", &sig, b"hello").is_err());
    }

    #[test]
    fn hex_format_defaults_apply_per_field() {
        assert_eq!(HexFormat::new(None, None), HexFormat::DEFAULT);
        let f = HexFormat::new(Some("X-Webhook-Signature"), None);
        assert_eq!((f.header, f.prefix), ("X-Webhook-Signature", "sha256="));
    }
}
