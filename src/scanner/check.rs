//! What a node's answer means for a detected payment: confirm it (and how it
//! is classified), wait, or reopen it because its transaction no longer
//! counts. Pure, so every rule is unit-tested here.
//!
//! - no receipt now: the transaction left the chain → reopen (`transaction_missing`)
//! - receipt status 0: the transaction failed → reopen (`transaction_failed`)
//! - native coin (no token): the transaction must pay the payment's address
//!   (else reopen, `wrong_recipient`); its value in wei, at 18 decimals, is
//!   the received amount when it differs from the reported one
//! - confirmations are counted from the block the receipt names now:
//!   `head - block + 1 ≥ confirmations` confirms, else wait (re-counted
//!   from the new block if it moved)

use crate::domain::PaymentStatus;
use crate::money::{classify, Amount};
use crate::scanner::node::Lookup;
use crate::store::payments::Payment;

/// Decimals of an EVM chain's native coin (ETH, BNB, POL…).
pub const NATIVE_DECIMALS: usize = 18;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Confirm {
        status: PaymentStatus,
        block: i64,
        /// The on-chain amount, when it differs from the reported one.
        onchain_amount: Option<String>,
    },
    Wait {
        block: i64,
    },
    Reopen {
        reason: &'static str,
    },
}

pub fn judge(p: &Payment, found: &Lookup, head: i64, confirmations: i64) -> Verdict {
    let Some(receipt) = &found.receipt else {
        return Verdict::Reopen {
            reason: "transaction_missing",
        };
    };
    if !receipt.success {
        return Verdict::Reopen {
            reason: "transaction_failed",
        };
    }
    let reported = p.received_amount.as_deref().unwrap_or("0");
    let mut onchain_amount = None;
    if p.token.is_none() {
        let Some(tx) = &found.tx else {
            return Verdict::Reopen {
                reason: "transaction_missing",
            };
        };
        if !tx
            .to
            .as_deref()
            .is_some_and(|to| to.eq_ignore_ascii_case(p.address.trim()))
        {
            return Verdict::Reopen {
                reason: "wrong_recipient",
            };
        }
        let onchain = Amount::from_base_units(&tx.value_wei, NATIVE_DECIMALS);
        // Compared as numbers: "1.00" reported for 10^18 wei is the same.
        let differs = Amount::parse("received_amount", reported).map_or(true, |r| r != onchain);
        if differs {
            onchain_amount = Some(onchain.as_str().to_string());
        }
    }
    let block = receipt.block_number;
    if head - block + 1 < confirmations {
        return Verdict::Wait { block };
    }
    let received = onchain_amount.as_deref().unwrap_or(reported);
    let status = match (
        Amount::parse("expected_amount", &p.expected_amount),
        Amount::parse("received_amount", received),
    ) {
        (Ok(expected), Ok(received)) => classify(&expected, &received),
        // Stored amounts were validated on the way in; a row edited by hand
        // is left detected rather than guessed at.
        _ => return Verdict::Wait { block },
    };
    Verdict::Confirm {
        status,
        block,
        onchain_amount,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scanner::node::{Receipt, Transfer};

    const TO: &str = "0xffcf8fdee72ac11b5c542428b35eef5769c409f0";

    fn payment(token: Option<&str>, received: &str) -> Payment {
        Payment {
            id: "pay_1".into(),
            merchant_id: "mer_1".into(),
            reference: "R".into(),
            chain: "dev".into(),
            token: token.map(String::from),
            address: "0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0".into(),
            expected_amount: "1.0".into(),
            received_amount: Some(received.into()),
            reported_amount: None,
            tx_hash: Some("0xab".into()),
            block_number: Some(10),
            status: PaymentStatus::Detected,
            callback_url: None,
            expires_at: None,
            detected_at: Some(1),
            confirmed_at: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn found(block: i64, success: bool, to: Option<&str>, wei: &str) -> Lookup {
        Lookup {
            receipt: Some(Receipt {
                block_number: block,
                success,
            }),
            tx: Some(Transfer {
                to: to.map(String::from),
                value_wei: wei.into(),
            }),
        }
    }

    const ONE_ETH: &str = "1000000000000000000";

    #[test]
    fn confirms_at_exactly_the_depth_counted_from_the_receipt_block() {
        let p = payment(None, "1");
        assert_eq!(
            judge(&p, &found(10, true, Some(TO), ONE_ETH), 11, 3),
            Verdict::Wait { block: 10 }
        );
        assert_eq!(
            judge(&p, &found(10, true, Some(TO), ONE_ETH), 12, 3),
            Verdict::Confirm {
                status: PaymentStatus::Confirmed,
                block: 10,
                onchain_amount: None
            }
        );
        // Moved to block 12 by a reorg: re-counted from there.
        assert_eq!(
            judge(&p, &found(12, true, Some(TO), ONE_ETH), 12, 3),
            Verdict::Wait { block: 12 }
        );
    }

    #[test]
    fn missing_failed_and_misdirected_transactions_reopen() {
        let p = payment(None, "1");
        let gone = Lookup {
            receipt: None,
            tx: None,
        };
        assert_eq!(
            judge(&p, &gone, 100, 3),
            Verdict::Reopen {
                reason: "transaction_missing"
            }
        );
        assert_eq!(
            judge(&p, &found(10, false, Some(TO), ONE_ETH), 100, 3),
            Verdict::Reopen {
                reason: "transaction_failed"
            }
        );
        assert_eq!(
            judge(
                &p,
                &found(
                    10,
                    true,
                    Some("0x22d491bde2303f2f43325b2108d26f1eaba1e32b"),
                    ONE_ETH
                ),
                100,
                3
            ),
            Verdict::Reopen {
                reason: "wrong_recipient"
            }
        );
        assert_eq!(
            judge(&p, &found(10, true, None, ONE_ETH), 100, 3),
            Verdict::Reopen {
                reason: "wrong_recipient"
            }
        );
    }

    #[test]
    fn the_onchain_value_classifies_when_it_differs() {
        // Reported 1, paid 0.5 on chain: underpaid, and the event says so.
        let p = payment(None, "1.000");
        assert_eq!(
            judge(&p, &found(10, true, Some(TO), "500000000000000000"), 100, 3),
            Verdict::Confirm {
                status: PaymentStatus::Underpaid,
                block: 10,
                onchain_amount: Some("0.5".into())
            }
        );
        // Same value in another spelling: the reported string is kept.
        assert_eq!(
            judge(&p, &found(10, true, Some(TO), ONE_ETH), 100, 3),
            Verdict::Confirm {
                status: PaymentStatus::Confirmed,
                block: 10,
                onchain_amount: None
            }
        );
        // One wei over is overpaid.
        assert_eq!(
            judge(
                &p,
                &found(10, true, Some(TO), "1000000000000000001"),
                100,
                3
            ),
            Verdict::Confirm {
                status: PaymentStatus::Overpaid,
                block: 10,
                onchain_amount: Some("1.000000000000000001".into())
            }
        );
    }

    #[test]
    fn token_payments_check_the_receipt_only() {
        let p = payment(Some("USDT"), "1");
        let receipt_only = Lookup {
            receipt: Some(Receipt {
                block_number: 10,
                success: true,
            }),
            tx: None,
        };
        assert_eq!(
            judge(&p, &receipt_only, 12, 3),
            Verdict::Confirm {
                status: PaymentStatus::Confirmed,
                block: 10,
                onchain_amount: None
            }
        );
    }
}
