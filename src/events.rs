//! Event types and the exact JSON body merchants receive: compact, fixed key
//! order (struct order), integers as numbers, amounts as strings, no floats.
//! The body is built once, stored in `events.payload`, and sent byte for byte
//! on every attempt, replay and resubmission.

use serde::Serialize;

use crate::error::AppError;
use crate::store::payments::Payment;
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

    pub fn parse(raw: &str) -> Result<EventType, AppError> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                AppError::bad_input(format!(
                    "event type: expected one of {}, got {raw:?}",
                    EventType::ALL.map(|t| t.as_str()).join(", ")
                ))
            })
    }

    /// The event a payment emits on entering `status`.
    pub fn for_payment_status(status: &str) -> Option<EventType> {
        Some(match status {
            "detected" => EventType::Detected,
            "confirmed" => EventType::Confirmed,
            "underpaid" => EventType::Underpaid,
            "overpaid" => EventType::Overpaid,
            "expired" => EventType::Expired,
            _ => return None,
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

#[derive(Serialize)]
struct PaymentData<'a> {
    payment_id: &'a str,
    reference: &'a str,
    status: &'a str,
    chain: &'a str,
    token: Option<&'a str>,
    address: &'a str,
    expected_amount: &'a str,
    received_amount: Option<&'a str>,
    /// Only when the node showed an on-chain value different from the one
    /// reported (`received_amount` is then the on-chain value).
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_amount: Option<&'a str>,
    tx_hash: Option<&'a str>,
    block_number: Option<i64>,
    confirmations: Option<i64>,
    detected_at: Option<String>,
    confirmed_at: Option<String>,
    expires_at: Option<String>,
    /// `payment.reorged` only: why the transaction no longer counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct TestData<'a> {
    merchant_id: &'a str,
    message: &'a str,
}

/// The body for a payment event. `confirmations` is counted against `head`;
/// `reason` is set for `payment.reorged`.
pub fn payment_body(
    event_id: &str,
    kind: EventType,
    created_at_ms: i64,
    p: &Payment,
    head: Option<i64>,
    reason: Option<&str>,
) -> String {
    let confirmations = match (p.block_number, head) {
        (Some(b), Some(h)) if h >= b => Some(h - b + 1),
        (Some(_), Some(_)) => Some(0),
        _ => None,
    };
    let data = PaymentData {
        payment_id: &p.id,
        reference: &p.reference,
        status: &p.status,
        chain: &p.chain,
        token: p.token.as_deref(),
        address: &p.address,
        expected_amount: &p.expected_amount,
        received_amount: p.received_amount.as_deref(),
        reported_amount: p.reported_amount.as_deref(),
        tx_hash: p.tx_hash.as_deref(),
        block_number: p.block_number,
        confirmations,
        detected_at: p.detected_at.map(rfc3339),
        confirmed_at: p.confirmed_at.map(rfc3339),
        expires_at: p.expires_at.map(rfc3339),
        reason,
    };
    encode(event_id, kind, created_at_ms, data)
}

/// The body of `webhook.test`.
pub fn test_body(event_id: &str, created_at_ms: i64, merchant_id: &str) -> String {
    let data = TestData {
        merchant_id,
        message: "This is a test event from payhook.",
    };
    encode(event_id, EventType::Test, created_at_ms, data)
}

fn encode<D: Serialize>(id: &str, kind: EventType, created_at_ms: i64, data: D) -> String {
    let env = Envelope {
        id,
        kind: kind.as_str(),
        created_at: rfc3339(created_at_ms),
        data,
    };
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_string(&env).expect("event body serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment() -> Payment {
        Payment {
            id: "pay_1".into(),
            merchant_id: "mer_1".into(),
            reference: "ORDER-1".into(),
            chain: "ethereum".into(),
            token: Some("USDT".into()),
            address: "0xabc".into(),
            expected_amount: "100.00".into(),
            received_amount: Some("100.00".into()),
            reported_amount: None,
            tx_hash: Some("0xdead".into()),
            block_number: Some(100),
            status: "confirmed".into(),
            callback_url: None,
            expires_at: None,
            detected_at: Some(1_700_000_000_000),
            confirmed_at: Some(1_700_000_100_000),
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn body_is_compact_with_fixed_key_order_and_survives_reserialization() {
        let body = payment_body(
            "evt_1",
            EventType::Confirmed,
            1_700_000_100_000,
            &payment(),
            Some(111),
            None,
        );
        assert!(body.starts_with(r#"{"id":"evt_1","type":"payment.confirmed","created_at":"2023-11-14T22:15:00Z","data":{"payment_id":"pay_1","reference":"ORDER-1","status":"confirmed","chain":"ethereum","token":"USDT""#), "{body}");
        assert!(body.contains(r#""block_number":100,"confirmations":12,"#));
        assert!(!body.contains(' '));
        // A receiver that parses and re-serializes (JSON.stringify, which
        // keeps key order) gets the same bytes.
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), body);
    }
}
