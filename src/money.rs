//! Exact decimal amounts. Amounts travel as the strings the gateway sent
//! (`"100.00"` stays `"100.00"` in the webhook body) and are compared digit by
//! digit, so any precision works: 18-decimal token amounts of any size
//! compare exactly, which a 28-digit fixed decimal type cannot promise.

use crate::domain::PaymentStatus;
use std::cmp::Ordering;
use std::fmt;

use crate::error::AppError;

/// Digits allowed before and after the point: wider than any token needs
/// (uint256 has 78 decimal digits), small enough to bound work on bad input.
const MAX_INT_DIGITS: usize = 78;
const MAX_FRAC_DIGITS: usize = 36;

/// A non-negative decimal amount kept as its original string. Equality is
/// numeric (`"1.00" == "1"`), consistent with the ordering.
#[derive(Debug, Clone)]
pub struct Amount(String);

impl PartialEq for Amount {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Amount {}

impl Amount {
    /// Accepts `123`, `123.45`, `0.000000000000000001`; rejects signs,
    /// exponents, spaces, empty parts and more digits than any chain uses.
    pub fn parse(field: &str, raw: &str) -> Result<Amount, AppError> {
        let err = || {
            AppError::bad_input(format!(
                "{field}: expected a non-negative decimal string such as \"100.00\" \
                 (digits, at most one '.', no sign or exponent), got {raw:?}"
            ))
        };
        let (int, frac) = match raw.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (raw, None),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        if let Some(f) = frac {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            if f.len() > MAX_FRAC_DIGITS {
                return Err(AppError::bad_input(format!(
                    "{field}: at most {MAX_FRAC_DIGITS} digits after the point, got {}",
                    f.len()
                )));
            }
        }
        if int.len() > MAX_INT_DIGITS {
            return Err(AppError::bad_input(format!(
                "{field}: at most {MAX_INT_DIGITS} digits before the point, got {}",
                int.len()
            )));
        }
        Ok(Amount(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A whole number of base units (wei) as an amount with `decimals`
    /// places: `("1500000000000000000", 18)` → `"1.5"`. `units` must be
    /// decimal digits (what the node client produces).
    pub fn from_base_units(units: &str, decimals: usize) -> Amount {
        let units = units.trim_start_matches('0');
        let padded = format!("{units:0>width$}", width = decimals + 1);
        let (int, frac) = padded.split_at(padded.len() - decimals);
        let frac = frac.trim_end_matches('0');
        Amount(if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        })
    }

    /// Integer digits without leading zeros and fraction digits without
    /// trailing zeros: equal amounts have equal parts.
    fn parts(&self) -> (&str, &str) {
        let (int, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        (int.trim_start_matches('0'), frac.trim_end_matches('0'))
    }
}

impl Ord for Amount {
    fn cmp(&self, other: &Self) -> Ordering {
        let (ai, af) = self.parts();
        let (bi, bf) = other.parts();
        ai.len()
            .cmp(&bi.len())
            .then_with(|| ai.cmp(bi))
            // Fractions compare lexicographically once trailing zeros are
            // gone: "5" > "49" because 0.5 > 0.49.
            .then_with(|| af.cmp(bf))
    }
}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a received amount relates to the expected one.
pub fn classify(expected: &Amount, received: &Amount) -> PaymentStatus {
    match received.cmp(expected) {
        Ordering::Less => PaymentStatus::Underpaid,
        Ordering::Equal => PaymentStatus::Confirmed,
        Ordering::Greater => PaymentStatus::Overpaid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        Amount::parse("amount", s).unwrap()
    }

    #[test]
    fn base_units_convert_exactly() {
        let wei = |u: &str| Amount::from_base_units(u, 18).as_str().to_string();
        assert_eq!(wei("1500000000000000000"), "1.5");
        assert_eq!(wei("1000000000000000000"), "1");
        assert_eq!(wei("1"), "0.000000000000000001");
        assert_eq!(wei("0"), "0");
        assert_eq!(
            wei("123456789012000000000000000001"),
            "123456789012.000000000000000001"
        );
        assert_eq!(Amount::from_base_units("120", 0).as_str(), "120");
        assert_eq!(a(&wei("1000000000000000000")), a("1.00"));
    }

    #[test]
    fn classification_is_exact_at_the_last_of_18_decimals() {
        let expected = a("1.000000000000000001");
        assert_eq!(
            classify(&expected, &a("1.000000000000000001")),
            PaymentStatus::Confirmed
        );
        assert_eq!(
            classify(&expected, &a("1.000000000000000000")),
            PaymentStatus::Underpaid
        );
        assert_eq!(
            classify(&expected, &a("1.000000000000000002")),
            PaymentStatus::Overpaid
        );
        assert_eq!(
            classify(&expected, &a("1.0000000000000000010")),
            PaymentStatus::Confirmed
        );
    }

    #[test]
    fn large_amounts_past_28_digits_compare_exactly() {
        let expected = a("123456789012345678901234.123456789012345678");
        assert_eq!(
            classify(&expected, &a("123456789012345678901234.123456789012345677")),
            PaymentStatus::Underpaid
        );
        assert_eq!(
            classify(
                &expected,
                &a("0123456789012345678901234.12345678901234567800")
            ),
            PaymentStatus::Confirmed
        );
    }

    #[test]
    fn zeros_and_padding_compare_equal() {
        assert_eq!(a("100"), a("100")); // same string
        assert_eq!(a("100.00").cmp(&a("100")), Ordering::Equal);
        assert_eq!(a("0.5").cmp(&a("0.49")), Ordering::Greater);
        assert_eq!(a("0").cmp(&a("0.000")), Ordering::Equal);
        assert_eq!(a("9.9").cmp(&a("10")), Ordering::Less);
    }

    #[test]
    fn rejects_what_is_not_a_plain_decimal() {
        for bad in [
            "", "-1", "+1", "1e5", "1.", ".5", "1.2.3", " 1", "1,5", "NaN", "0x10", "１",
        ] {
            let e = Amount::parse("expected_amount", bad).unwrap_err();
            assert!(
                e.message.starts_with("expected_amount: expected"),
                "{bad}: {}",
                e.message
            );
        }
    }
}
