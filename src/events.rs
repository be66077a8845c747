//! Event types and the exact JSON body merchants receive: compact, fixed key
//! order (struct order), integers as numbers, amounts as strings, no floats.
//! The body is built once, stored in `events.payload`, and sent byte for byte
//! on every attempt, replay and resubmission.

use serde::Serialize;

use crate::domain::PaymentStatus;
use crate::error::AppError;
use crate::time::rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Detected,
    Confirmed,
    Underpaid,
    Overpaid,
    Expired,
    Reorged,
    Test,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::Detected,
        EventType::Confirmed,
        EventType::Underpaid,
        EventType::Overpaid,
        EventType::Expired,
        EventType::Reorged,
        EventType::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Detected => "payment.detected",
            EventType::Confirmed => "payment.confirmed",
            EventType::Underpaid => "payment.underpaid",
            EventType::Overpaid => "payment.overpaid",
            EventType::Expired => "payment.expired",
            EventType::Reorged => "payment.reorged",
            EventType::Test => "webhook.test",
        }
    }

    /// Parses an event type; the error names `field` and the accepted types.
    pub fn parse(field: &str, raw: &str) -> Result<EventType, AppError> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                AppError::bad_input(format!(
                    "{field}: expected one of {}, got {raw:?}",
                    EventType::ALL.map(|t| t.as_str()).join(", ")
                ))
            })
    }

    /// The event a payment emits on entering `status`.
    pub fn for_payment_status(status: PaymentStatus) -> Option<EventType> {
        Some(match status {
            PaymentStatus::Detected => EventType::Detected,
            PaymentStatus::Confirmed => EventType::Confirmed,
            PaymentStatus::Underpaid => EventType::Underpaid,
            PaymentStatus::Overpaid => EventType::Overpaid,
            PaymentStatus::Expired => EventType::Expired,
            PaymentStatus::Pending => return None,
        })
    }
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: String,
    data: D,
}

/// The `data` of a payment event, in the order merchants receive it.
#[derive(Serialize)]
pub struct PaymentData<'a> {
    pub payment_id: &'a str,
    pub reference: &'a str,
    pub status: &'a str,
    pub chain: &'a str,
    pub token: Option<&'a str>,
    pub address: &'a str,
    pub expected_amount: &'a str,
    pub received_amount: Option<&'a str>,
    /// Only when the node showed an on-chain value different from the one
    /// reported (`received_amount` is then the on-chain value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_amount: Option<&'a str>,
    pub tx_hash: Option<&'a str>,
    pub block_number: Option<i64>,
    pub confirmations: Option<i64>,
    pub detected_at: Option<String>,
    pub confirmed_at: Option<String>,
    pub expires_at: Option<String>,
    /// `payment.reorged` only: why the transaction no longer counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// Confirmations of a transaction mined in `block` when the head is `head`
/// (0 while the head is behind it; unknown without either).
pub fn confirmations(block: Option<i64>, head: Option<i64>) -> Option<i64> {
    match (block, head) {
        (Some(b), Some(h)) if h >= b => Some(h.checked_sub(b)?.checked_add(1)?),
        (Some(_), Some(_)) => Some(0),
        _ => None,
    }
}

#[derive(Serialize)]
struct TestData<'a> {
    merchant_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<&'a str>,
    message: &'a str,
}

/// The body for a payment event.
pub fn payment_body(
    event_id: &str,
    kind: EventType,
    created_at_ms: i64,
    data: PaymentData<'_>,
) -> String {
    encode(event_id, kind.as_str(), created_at_ms, data)
}

/// The body of `webhook.test`, naming the endpoint it was sent to (if sent
/// to one).
pub fn test_body(
    event_id: &str,
    created_at_ms: i64,
    merchant_id: &str,
    endpoint_id: Option<&str>,
) -> String {
    let data = TestData {
        merchant_id,
        endpoint_id,
        message: "This is a test event from payhook.",
    };
    encode(event_id, EventType::Test.as_str(), created_at_ms, data)
}

/// The body of one of payhook's own operational events (SPEC §9).
pub fn operator_body<D: Serialize>(
    event_id: &str,
    kind: &str,
    created_at_ms: i64,
    data: D,
) -> String {
    encode(event_id, kind, created_at_ms, data)
}

fn encode<D: Serialize>(id: &str, kind: &str, created_at_ms: i64, data: D) -> String {
    let env = Envelope {
        id,
        kind,
        created_at: rfc3339(created_at_ms),
        data,
    };
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_string(&env).expect("event body serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment() -> PaymentData<'static> {
        PaymentData {
            payment_id: "pay_1",
            reference: "ORDER-1",
            status: "confirmed",
            chain: "ethereum",
            token: Some("USDT"),
            address: "0xabc",
            expected_amount: "100.00",
            received_amount: Some("100.00"),
            reported_amount: None,
            tx_hash: Some("0xdead"),
            block_number: Some(100),
            confirmations: confirmations(Some(100), Some(111)),
            detected_at: Some(rfc3339(1_700_000_000_000)),
            confirmed_at: Some(rfc3339(1_700_000_100_000)),
            expires_at: None,
            reason: None,
        }
    }

    #[test]
    fn body_is_compact_with_fixed_key_order_and_survives_reserialization() {
        let body = payment_body("evt_1", EventType::Confirmed, 1_700_000_100_000, payment());
        assert!(body.starts_with(r#"{"id":"evt_1","type":"payment.confirmed","created_at":"2023-11-14T22:15:00Z","data":{"payment_id":"pay_1","reference":"ORDER-1","status":"confirmed","chain":"ethereum","token":"USDT""#), "{body}");
        assert!(body.contains(r#""block_number":100,"confirmations":12,"#));
        assert!(!body.contains(' '));
        // A receiver that parses and re-serializes (JSON.stringify, which
        // keeps key order) gets the same bytes.
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), body);
    }

    #[test]
    fn confirmations_never_overflow() {
        assert_eq!(confirmations(Some(100), Some(111)), Some(12));
        assert_eq!(confirmations(Some(100), Some(99)), Some(0));
        assert_eq!(confirmations(Some(0), Some(i64::MAX)), None);
        assert_eq!(confirmations(Some(i64::MIN), Some(0)), None);
        assert_eq!(confirmations(None, Some(5)), None);
    }
}
