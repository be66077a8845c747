//! What a node's answer means for a detected payment: confirm it (and how it
//! is classified), wait, or reopen it because its transaction no longer
//! counts. Pure, so every rule is unit-tested here.
//!
//! - no receipt now: the transaction left the chain → reopen (`transaction_missing`)
//! - receipt status 0: the transaction failed → reopen (`transaction_failed`)
//! - native coin (no token): the transaction must pay the payment's address
//!   (else reopen, `wrong_recipient`); its value in wei, at 18 decimals, is
//!   the received amount when it differs from the reported one
//! - a configured token: the receipt's `Transfer` logs of the token's
//!   contract to the payment's address, summed, are the received amount
//!   (none: reopen, `wrong_recipient`); logs of other contracts, even with
//!   the same event, do not count. A token not configured for the chain is
//!   checked by receipt only.
//! - confirmations are counted from the block the receipt names now:
//!   `head - block + 1 ≥ confirmations` confirms, else wait (re-counted
//!   from the new block if it moved)

use crate::config::TokenConfig;
use crate::domain::PaymentStatus;
use crate::money::{classify, Amount};
use crate::scanner::node::{Lookup, Receipt};
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

pub fn judge(
    p: &Payment,
    found: &Lookup,
    head: i64,
    confirmations: i64,
    token: Option<&TokenConfig>,
) -> Verdict {
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
    let onchain = match (&p.token, token) {
        (None, _) => match native_amount(p, found) {
            Ok(a) => Some(a),
            Err(reopen) => return reopen,
        },
        (Some(_), Some(token)) => match token_amount(p, receipt, token) {
            Ok(a) => Some(a),
            Err(verdict) => return verdict,
        },
        (Some(_), None) => None,
    };
    // Compared as numbers: "1.00" reported for 10^18 wei is the same.
    let onchain_amount = onchain
        .filter(|a| Amount::parse("received_amount", reported).map_or(true, |r| r != *a))
        .map(|a| a.as_str().to_string());
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

/// Native coin: the transaction must pay the address; its value at 18
/// decimals is what arrived.
fn native_amount(p: &Payment, found: &Lookup) -> Result<Amount, Verdict> {
    let Some(tx) = &found.tx else {
        return Err(Verdict::Reopen {
            reason: "transaction_missing",
        });
    };
    if !tx
        .to
        .as_deref()
        .is_some_and(|to| to.eq_ignore_ascii_case(p.address.trim()))
    {
        return Err(Verdict::Reopen {
            reason: "wrong_recipient",
        });
    }
    Ok(Amount::from_base_units(&tx.value_wei, NATIVE_DECIMALS))
}

/// A configured token: the sum of its contract's transfers to the address
/// in this receipt, at the token's decimals.
fn token_amount(p: &Payment, receipt: &Receipt, token: &TokenConfig) -> Result<Amount, Verdict> {
    let mut sum = ruint::aliases::U256::ZERO;
    let mut paid = false;
    for t in &receipt.transfers {
        if t.contract.eq_ignore_ascii_case(&token.contract)
            && t.to.eq_ignore_ascii_case(p.address.trim())
        {
            paid = true;
            let value = t.value.parse::<ruint::aliases::U256>().ok();
            sum = match value.and_then(|v| sum.checked_add(v)) {
                Some(s) => s,
                // Beyond 2^256 in one transaction: not a real payment.
                None => {
                    return Err(Verdict::Wait {
                        block: receipt.block_number,
                    })
                }
            };
        }
    }
    if !paid {
        return Err(Verdict::Reopen {
            reason: "wrong_recipient",
        });
    }
    Ok(Amount::from_base_units(
        &sum.to_string(),
        token.decimals as usize,
    ))
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
                transfers: vec![],
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
            judge(&p, &found(10, true, Some(TO), ONE_ETH), 11, 3, None),
            Verdict::Wait { block: 10 }
        );
        assert_eq!(
            judge(&p, &found(10, true, Some(TO), ONE_ETH), 12, 3, None),
            Verdict::Confirm {
                status: PaymentStatus::Confirmed,
                block: 10,
                onchain_amount: None
            }
        );
        // Moved to block 12 by a reorg: re-counted from there.
        assert_eq!(
            judge(&p, &found(12, true, Some(TO), ONE_ETH), 12, 3, None),
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
            judge(&p, &gone, 100, 3, None),
            Verdict::Reopen {
                reason: "transaction_missing"
            }
        );
        assert_eq!(
            judge(&p, &found(10, false, Some(TO), ONE_ETH), 100, 3, None),
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
                3,
                None
            ),
            Verdict::Reopen {
                reason: "wrong_recipient"
            }
        );
        assert_eq!(
            judge(&p, &found(10, true, None, ONE_ETH), 100, 3, None),
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
            judge(
                &p,
                &found(10, true, Some(TO), "500000000000000000"),
                100,
                3,
                None
            ),
            Verdict::Confirm {
                status: PaymentStatus::Underpaid,
                block: 10,
                onchain_amount: Some("0.5".into())
            }
        );
        // Same value in another spelling: the reported string is kept.
        assert_eq!(
            judge(&p, &found(10, true, Some(TO), ONE_ETH), 100, 3, None),
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
                3,
                None
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
                transfers: vec![],
            }),
            tx: None,
        };
        assert_eq!(
            judge(&p, &receipt_only, 12, 3, None),
            Verdict::Confirm {
                status: PaymentStatus::Confirmed,
                block: 10,
                onchain_amount: None
            }
        );
    }

    fn token_receipt(transfers: &[(&str, &str, &str)]) -> Lookup {
        Lookup {
            receipt: Some(Receipt {
                block_number: 10,
                success: true,
                transfers: transfers
                    .iter()
                    .map(
                        |(contract, to, value)| crate::scanner::node::TokenTransfer {
                            contract: contract.to_string(),
                            to: to.to_string(),
                            value: value.to_string(),
                        },
                    )
                    .collect(),
            }),
            tx: None,
        }
    }

    #[test]
    fn a_configured_token_is_judged_by_its_transfer_logs() {
        const USDT: &str = "0x00000000000000000000000000000000000000aa";
        const OTHER: &str = "0x00000000000000000000000000000000000000bb";
        let token = TokenConfig {
            contract: "0x00000000000000000000000000000000000000AA".into(),
            decimals: 6,
        };
        let p = payment(Some("USDT"), "1");
        let confirm = |onchain: Option<&str>, status| Verdict::Confirm {
            status,
            block: 10,
            onchain_amount: onchain.map(String::from),
        };
        // Exact, in two transfers of one transaction.
        let two = token_receipt(&[(USDT, TO, "400000"), (USDT, TO, "600000")]);
        assert_eq!(
            judge(&p, &two, 12, 3, Some(&token)),
            confirm(None, PaymentStatus::Confirmed)
        );
        // One base unit short: underpaid, with the on-chain figure.
        let short = token_receipt(&[(USDT, TO, "999999")]);
        assert_eq!(
            judge(&p, &short, 12, 3, Some(&token)),
            confirm(Some("0.999999"), PaymentStatus::Underpaid)
        );
        // Another contract's transfer, or one to someone else, pays nothing.
        for paid in [
            token_receipt(&[(OTHER, TO, "1000000")]),
            token_receipt(&[(
                USDT,
                "0x22d491bde2303f2f43325b2108d26f1eaba1e32b",
                "1000000",
            )]),
        ] {
            assert_eq!(
                judge(&p, &paid, 12, 3, Some(&token)),
                Verdict::Reopen {
                    reason: "wrong_recipient"
                }
            );
        }
    }
}
