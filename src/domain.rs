//! The words payhook stores and shows: delivery and payment statuses,
//! dead-letter reasons, attempt error kinds, signature schemes, queue
//! lanes. Each is an enum with one spelling, used by SQL binds, JSON, the
//! CLI and log fields alike; `parse` names what is accepted.

use std::fmt;

use crate::error::{AppError, AppResult};

/// An enum stored and shown as text: its variants and their one spelling.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// `field: expected one of …, got "x"` for anything else.
            pub fn parse(field: &str, raw: &str) -> AppResult<$name> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == raw)
                    .ok_or_else(|| unknown(field, raw, Self::ALL.iter().map(|v| v.as_str())))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = AppError;
            fn from_str(raw: &str) -> AppResult<$name> {
                $name::parse($what, raw)
            }
        }

        /// Decoding a stored value (`#[sqlx(try_from = "String")]`).
        impl TryFrom<String> for $name {
            type Error = AppError;
            fn try_from(raw: String) -> AppResult<$name> {
                $name::parse($what, &raw)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse($what, &raw).map_err(|e| serde::de::Error::custom(e.message))
            }
        }

        impl Stored for $name {
            fn stored(&self) -> &str {
                self.as_str()
            }
        }
    };
}

/// A value stored as text: an enum's word, or an id (by reference). The
/// store binds anything `Stored` as that text.
pub trait Stored {
    fn stored(&self) -> &str;
}

fn unknown<'a>(field: &str, raw: &str, accepted: impl Iterator<Item = &'a str>) -> AppError {
    AppError::bad_input(format!(
        "{field}: expected one of {}, got {raw:?}",
        accepted.collect::<Vec<_>>().join(", ")
    ))
}

text_enum!(
    /// Where a delivery stands.
    DeliveryStatus, "status", {
        Pending => "pending",
        Succeeded => "succeeded",
        Dead => "dead",
    }
);

text_enum!(
    /// Where a payment stands (`pending` → `detected` → a final status, or
    /// `pending` → `expired`; `detected` → `pending` on a reorg).
    PaymentStatus, "status", {
        Pending => "pending",
        Detected => "detected",
        Confirmed => "confirmed",
        Underpaid => "underpaid",
        Overpaid => "overpaid",
        Expired => "expired",
    }
);

text_enum!(
    /// Why a delivery is in the dead-letter queue.
    DeadReason, "reason", {
        /// `retry.max_attempts` failed attempts.
        Exhausted => "exhausted",
        /// The receiver answered 410 Gone.
        Gone => "gone",
        /// Its endpoint failed for `circuit.disable_after` and was disabled.
        EndpointDisabled => "endpoint_disabled",
        /// The target URL or its addresses are not allowed (SSRF guard).
        RejectedTarget => "rejected_target",
    }
);

text_enum!(
    /// What went wrong in a failed attempt (`delivery_attempts.error_kind`).
    AttemptErrorKind, "error_kind", {
        Timeout => "timeout",
        Connect => "connect",
        /// A non-2xx, non-3xx status.
        Status => "status",
        /// A 3xx, not followed.
        Redirect => "redirect",
        /// The response body broke off.
        Body => "body",
        /// The request could not be made (headers, TLS, protocol).
        Request => "request",
        RejectedTarget => "rejected_target",
    }
);

text_enum!(
    /// How a merchant's webhooks are signed.
    SignatureScheme, "signature_scheme", {
        /// Standard Webhooks: `webhook-signature: v1,<base64>`.
        Standard => "standard",
        /// `<header>: <prefix><hex HMAC of the body>`.
        Hex => "hex",
    }
);

text_enum!(
    /// Whether an endpoint is sent to (a merchant shows its primary endpoint's).
    EndpointStatus, "status", {
        Active => "active",
        Disabled => "disabled",
    }
);

text_enum!(
    /// The two delivery queues: first attempts never wait behind retries.
    Lane, "lane", {
        First => "first",
        Retry => "retry",
    }
);

impl Lane {
    /// The lane an attempt runs in.
    pub fn for_attempt(attempt: i64) -> Lane {
        if attempt <= 1 {
            Lane::First
        } else {
            Lane::Retry
        }
    }

    /// The apalis queue (`job_type`) of this lane.
    pub const fn queue(self) -> &'static str {
        match self {
            Lane::First => "payhook.deliveries.first",
            Lane::Retry => "payhook.deliveries.retry",
        }
    }
}

/// The highest block height payhook accepts (2^53 − 1: exact in every JSON
/// reader; chains are many orders of magnitude below it). Anything above is
/// refused, so confirmation counts can never overflow.
pub const MAX_BLOCK_HEIGHT: i64 = (1 << 53) - 1;

/// Checks a block height given by a user or a node.
pub fn block_height(field: &str, v: i64) -> AppResult<i64> {
    if !(0..=MAX_BLOCK_HEIGHT).contains(&v) {
        return Err(AppError::bad_input(format!(
            "{field}: expected a whole number from 0 to {MAX_BLOCK_HEIGHT}, got {v}"
        )));
    }
    Ok(v)
}

impl PaymentStatus {
    /// A status no scan moves a payment out of.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentStatus::Confirmed
                | PaymentStatus::Underpaid
                | PaymentStatus::Overpaid
                | PaymentStatus::Expired
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_back() {
        for r in DeadReason::ALL {
            assert_eq!(DeadReason::parse("reason", r.as_str()).unwrap(), *r);
        }
        for s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>().unwrap(), *s);
        }
        assert_eq!(
            serde_json::to_string(&AttemptErrorKind::RejectedTarget).unwrap(),
            "\"rejected_target\""
        );
    }

    #[test]
    fn unknown_spelling_names_what_is_accepted() {
        let e = DeadReason::parse("reason", "lost").unwrap_err();
        assert_eq!(
            e.message,
            "reason: expected one of exhausted, gone, endpoint_disabled, rejected_target, got \"lost\""
        );
        assert!(serde_json::from_str::<Lane>("\"fast\"").is_err());
    }
}
