//! Prefixed identifiers (`mer_`, `ep_`, `pay_`, `evt_`, `dlv_`, `dlq_` + ULID), one
//! type per kind so a delivery id can never be passed where an event id is
//! meant, and the secrets merchants verify with.

use std::fmt;

use base64::Engine;
use rand::RngCore;

pub const MERCHANT: &str = "mer_";
pub const PAYMENT: &str = "pay_";
pub const EVENT: &str = "evt_";
pub const DELIVERY: &str = "dlv_";
pub const DEAD_LETTER: &str = "dlq_";
pub const ENDPOINT: &str = "ep_";

/// How far ahead of the clock the last id may be before the generator
/// starts again (ids of one millisecond count up from the previous one).
const CLOCK_SLACK_MS: u64 = 2_000;

fn now_ms() -> u64 {
    u64::try_from(crate::time::now_ms()).unwrap_or(0)
}

/// A new id: the prefix then a ULID, so ids sort by creation time. Within
/// one process they are strictly increasing, also inside one millisecond
/// (lists such as the audit log page newest first by id); across processes
/// ids of the same millisecond are in no particular order.
pub fn new_id(prefix: &str) -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let next = next_ulid(&mut generator, now_ms());
    format!("{prefix}{next}")
}

fn next_ulid(generator: &mut ulid::Generator, now: u64) -> ulid::Ulid {
    match generator.generate() {
        // The clock stepped back after a jump ahead: the generator would
        // keep counting up from the jump's time; start again from now.
        Ok(id) if id.timestamp_ms() > now.saturating_add(CLOCK_SLACK_MS) => {
            *generator = ulid::Generator::new();
            generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
        }
        Ok(id) => id,
        // The random part ran out within one millisecond: a fresh ULID.
        Err(_) => ulid::Ulid::new(),
    }
}

/// The smallest id minted at `ms` with `prefix`: every id below it was
/// minted before.
pub fn id_bound(prefix: &str, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0).min((1 << 48) - 1);
    format!("{prefix}{}", ulid::Ulid::from_parts(ms, 0))
}

/// An id type: stored and shown as its string, minted with its prefix.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:expr) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh id.
            pub fn new() -> Self {
                $name(new_id($prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new()
            }
        }

        /// An id as a user or a row gave it (unknown ids are simply not found).
        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl crate::domain::Stored for &$name {
            fn stored(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// `mer_…`
    MerchantId,
    MERCHANT
);
id_type!(
    /// `pay_…`
    PaymentId,
    PAYMENT
);
id_type!(
    /// `evt_…`: also the `webhook-id` merchants deduplicate on.
    EventId,
    EVENT
);
id_type!(
    /// `dlv_…`
    DeliveryId,
    DELIVERY
);
id_type!(
    /// `dlq_…`
    DeadLetterId,
    DEAD_LETTER
);
id_type!(
    /// `ep_…`: one of a merchant's webhook endpoints.
    EndpointId,
    ENDPOINT
);

impl EndpointId {
    /// The endpoint that payhook's own operational events go to (SPEC §9),
    /// kept in step with `operator.webhook_url`.
    pub fn operator() -> Self {
        EndpointId(OPERATOR_ENDPOINT.to_string())
    }
}

/// The hidden merchant and endpoint that own operator events.
pub const OPERATOR_MERCHANT: &str = "mer_operator";
pub const OPERATOR_ENDPOINT: &str = "ep_operator";

impl EventId {
    /// The id of a payment's state change, derived from what the change is:
    /// the payment, the event type, the transaction and the payment's
    /// sequence number of events. A change redone after a crash or power
    /// loss that lost its first write gets the same id, so merchants who
    /// deduplicate on `webhook-id` are not credited twice.
    ///
    /// Still a ULID: its time is the payment's creation and its first 16
    /// random bits the sequence, so a payment's events sort in order.
    pub fn of_change(
        payment: &PaymentId,
        payment_created_ms: i64,
        kind: &str,
        tx_hash: Option<&str>,
        seq: u64,
    ) -> EventId {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [payment.as_str(), kind, tx_hash.unwrap_or("")] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(seq.to_be_bytes());
        let digest = h.finalize();
        let mut low = [0u8; 8];
        low.copy_from_slice(&digest[..8]);
        let random = (u128::from(seq.min(0xFFFF)) << 64) | u128::from(u64::from_be_bytes(low));
        let time = u64::try_from(payment_created_ms)
            .unwrap_or(0)
            .min((1 << 48) - 1);
        EventId(format!("{EVENT}{}", ulid::Ulid::from_parts(time, random)))
    }
}

/// A string that must never be shown: signing secrets, header values, the
/// admin token. `Debug` and `Display` print `[redacted]`; the value is read
/// only through [`Secret::expose`], so every use is visible in the code.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `whsec_` + base64 of 32 random bytes, the Standard Webhooks secret form.
pub fn new_secret() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
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
        let a = EventId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = EventId::new();
        assert!(a.as_str().starts_with("evt_") && a.as_str().len() == 30);
        assert!(a < b);
        assert!(DeliveryId::new().as_str().starts_with("dlv_"));
    }

    #[test]
    fn ids_follow_the_clock_back_after_it_jumped_ahead() {
        let mut g = ulid::Generator::new();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let ahead = g.generate_from_datetime(later).unwrap();
        let next = next_ulid(&mut g, now_ms());
        assert!(
            next.timestamp_ms() <= now_ms() + 1,
            "still counting from the jump"
        );
        assert!(next < ahead);
        let after = next_ulid(&mut g, now_ms());
        assert!(after > next, "increasing again from now");
    }

    #[test]
    fn ids_of_one_millisecond_still_increase() {
        let ids: Vec<String> = (0..2_000).map(|_| new_id("aud_")).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "not strictly increasing"
        );
    }

    #[test]
    fn a_state_change_always_gets_the_same_event_id() {
        let p = PaymentId::from("pay_01J0000000000000000000000");
        let a = EventId::of_change(&p, 1_700_000_000_000, "payment.confirmed", Some("0xab"), 1);
        let b = EventId::of_change(&p, 1_700_000_000_000, "payment.confirmed", Some("0xab"), 1);
        assert_eq!(a, b);
        assert!(a.as_str().starts_with("evt_") && a.as_str().len() == 30);
        // Another transaction, type or position is another change.
        for other in [
            EventId::of_change(&p, 1_700_000_000_000, "payment.confirmed", Some("0xac"), 1),
            EventId::of_change(&p, 1_700_000_000_000, "payment.underpaid", Some("0xab"), 1),
            EventId::of_change(&p, 1_700_000_000_000, "payment.confirmed", Some("0xab"), 3),
        ] {
            assert_ne!(a, other);
        }
        // A payment's events sort in sequence.
        let first = EventId::of_change(&p, 1_700_000_000_000, "payment.detected", Some("0xab"), 0);
        assert!(first < a);
    }

    #[test]
    fn secret_decodes_to_32_bytes_and_never_shows() {
        let s = new_secret();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.expose().strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
    }
}
