//! Prefixed identifiers (`mer_`, `pay_`, `evt_`, `dlv_`, `dlq_` + ULID) and
//! the secrets merchants verify with.

use base64::Engine;
use rand::RngCore;

pub const MERCHANT: &str = "mer_";
pub const PAYMENT: &str = "pay_";
pub const EVENT: &str = "evt_";
pub const DELIVERY: &str = "dlv_";
pub const DEAD_LETTER: &str = "dlq_";

/// A new id: the prefix then a ULID, so ids sort by creation time.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", ulid::Ulid::new())
}

/// `whsec_` + base64 of 32 random bytes, the Standard Webhooks secret form.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A random admin token (URL-safe base64 of 32 bytes).
pub fn new_admin_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_prefix_and_sort_by_time() {
        let a = new_id(EVENT);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(EVENT);
        assert!(a.starts_with("evt_") && a.len() == 30);
        assert!(a < b);
    }

    #[test]
    fn secret_decodes_to_32_bytes() {
        let s = new_secret();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32);
    }
}
