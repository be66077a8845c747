//! Token payments on a chain with a node: the receipt's ERC-20 `Transfer`
//! logs of the configured contract to the payment's address decide the
//! recipient and the amount. Against a real local node (ganache) and a real
//! ERC-20 compiled from tests/evm/contracts by the pinned solc.

use payhook::config::{ChainConfig, TokenConfig};
use payhook::error::ErrorKind;
use payhook::ids::{MerchantId, PaymentId};
use payhook::ops::payments::{self, Detection, NewPayment};
use payhook::scanner::scan_once;
use payhook::store;
use serde_json::{json, Value};

use crate::ganache::{Ganache, ALICE, BOB, CAROL};
use crate::support::Env;

const DEPTH: u32 = 3;
const USDT: u128 = 1_000_000; // 6 decimals
const DAI: u128 = 1_000_000_000_000_000_000; // 18 decimals

struct Chain {
    node: Ganache,
    usdt: String,
    dai: String,
    env: Env,
    merchant: MerchantId,
}

/// A node chain `dev` with USDT (6 decimals, configured as `usdt`: symbols
/// match whatever their case) and DAI (18).
async fn chain() -> Chain {
    let node = Ganache::start().await;
    let usdt = node.deploy_token(6).await;
    let dai = node.deploy_token(18).await;
    let (url, u, d) = (node.url(), usdt.clone(), dai.clone());
    let env = Env::with(move |c| {
        let tokens = [
            (
                "usdt".to_string(),
                TokenConfig {
                    contract: u,
                    decimals: 6,
                },
            ),
            (
                "DAI".to_string(),
                TokenConfig {
                    contract: d,
                    decimals: 18,
                },
            ),
        ]
        .into();
        c.chains.insert(
            "dev".into(),
            ChainConfig {
                confirmations: DEPTH,
                rpc_url: Some(payhook::ids::Secret::new(url)),
                tokens,
            },
        );
    })
    .await;
    let merchant = env.merchant("http://127.0.0.1:9/none").await.merchant.id;
    Chain {
        node,
        usdt,
        dai,
        env,
        merchant,
    }
}

impl Chain {
    /// A token payment to `address`, detected as the gateway reported it.
    async fn detected(
        &self,
        reference: &str,
        token: &str,
        address: &str,
        expected: &str,
        reported: &str,
        tx: &str,
    ) -> PaymentId {
        let p = payments::create(
            &self.env.store,
            &self.env.cfg,
            NewPayment {
                merchant_id: self.merchant.clone(),
                reference: reference.into(),
                chain: "dev".into(),
                token: Some(token.into()),
                address: address.into(),
                expected_amount: expected.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let block = self.node.block_of(tx).await;
        let sighting = Detection {
            tx_hash: tx.into(),
            amount: reported.into(),
            block_number: block,
        };
        payments::detect(&self.env.store, &self.env.cfg, &p.id, sighting)
            .await
            .unwrap();
        p.id
    }

    async fn payment(&self, id: &PaymentId) -> store::payments::Payment {
        store::payments::get(&self.env.store, id).await.unwrap()
    }

    async fn event(&self, id: &PaymentId, kind: &str) -> Value {
        store::events::list_for_payment(&self.env.store, id)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.kind == kind)
            .map(|e| serde_json::from_str(&e.payload).unwrap())
            .unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn token_payments_are_judged_by_the_configured_contracts_transfer_logs() {
    let c = chain().await;
    let n = &c.node;
    let fake_usdt = n.deploy_token(6).await; // same symbol, not configured
    let exact = n
        .token_transfer(&c.usdt, ALICE, BOB, 25 * USDT + USDT / 2)
        .await;
    let exact = c
        .detected("EXACT", "USDT", BOB, "25.5", "25.5", &exact)
        .await;
    let short = n.token_transfer(&c.usdt, ALICE, BOB, 10 * USDT - 1).await;
    let short = c.detected("SHORT", "USDT", BOB, "10", "10", &short).await;
    let dai = n.token_transfer(&c.dai, ALICE, BOB, DAI + DAI / 2).await;
    let dai = c.detected("DAI", "dai", BOB, "1.5", "1.5", &dai).await;
    let elsewhere = n.token_transfer(&c.usdt, ALICE, CAROL, 5 * USDT).await;
    let elsewhere = c
        .detected("ELSEWHERE", "USDT", BOB, "5", "5", &elsewhere)
        .await;
    let fake = n.token_transfer(&fake_usdt, ALICE, BOB, 5 * USDT).await;
    let fake = c.detected("FAKE", "USDT", BOB, "5", "5", &fake).await;
    let twice = n
        .token_transfer_twice(&c.usdt, BOB, 4 * USDT, 6 * USDT)
        .await;
    let twice = c.detected("TWICE", "USDT", BOB, "10", "10", &twice).await;
    // Bob holds no DAI: his transfer reverts.
    let reverted = n.token_transfer(&c.dai, CAROL, BOB, DAI).await;
    let reverted = c
        .detected("REVERTED", "DAI", BOB, "1", "1", &reverted)
        .await;
    n.mine(DEPTH).await;

    let r = scan_once(&c.env.store, &c.env.cfg).await.unwrap();
    assert_eq!((r.confirmed, r.underpaid, r.reorged), (3, 1, 3), "{r:?}");
    for id in [&exact, &dai, &twice] {
        let p = c.payment(id).await;
        assert_eq!(p.status.as_str(), "confirmed", "{}", p.reference);
        assert_eq!(p.reported_amount, None, "{}", p.reference);
    }
    // One base unit short: underpaid, with the exact on-chain figure.
    let p = c.payment(&short).await;
    assert_eq!(p.status.as_str(), "underpaid");
    assert_eq!(p.received_amount.as_deref(), Some("9.999999"));
    let ev = c.event(&short, "payment.underpaid").await;
    assert_eq!(ev["data"]["received_amount"], "9.999999");
    assert_eq!(ev["data"]["reported_amount"], "10");
    // Paid to someone else, or in another contract's token: not paid.
    for (id, reason) in [
        (&elsewhere, "wrong_recipient"),
        (&fake, "wrong_recipient"),
        (&reverted, "transaction_failed"),
    ] {
        assert_eq!(c.payment(id).await.status.as_str(), "pending");
        let ev = c.event(id, "payment.reorged").await;
        assert_eq!(ev["data"]["reason"], json!(reason));
    }
}

#[tokio::test]
async fn a_token_transfer_a_reorg_drops_reopens_then_a_new_sighting_confirms() {
    let c = chain().await;
    let n = &c.node;
    let snap = n.snapshot().await;
    let tx = n.token_transfer(&c.usdt, ALICE, BOB, 7 * USDT).await;
    let id = c.detected("REORG", "USDT", BOB, "7", "7", &tx).await;
    n.revert(&snap).await;
    n.mine(DEPTH + 2).await;
    let r = scan_once(&c.env.store, &c.env.cfg).await.unwrap();
    assert_eq!(r.reorged, 1, "{r:?}");
    let ev = c.event(&id, "payment.reorged").await;
    assert_eq!(ev["data"]["reason"], "transaction_missing");
    // Paid again on the new chain.
    let again = n.token_transfer(&c.usdt, ALICE, BOB, 7 * USDT).await;
    let block = n.block_of(&again).await;
    let sighting = Detection {
        tx_hash: again,
        amount: "7".into(),
        block_number: block,
    };
    payments::detect(&c.env.store, &c.env.cfg, &id, sighting)
        .await
        .unwrap();
    n.mine(DEPTH).await;
    let r = scan_once(&c.env.store, &c.env.cfg).await.unwrap();
    assert_eq!(r.confirmed, 1, "{r:?}");
    assert_eq!(c.payment(&id).await.status.as_str(), "confirmed");
}

#[tokio::test]
async fn a_token_not_configured_for_a_node_chain_is_refused_at_creation() {
    let c = chain().await;
    let e = payments::create(
        &c.env.store,
        &c.env.cfg,
        NewPayment {
            merchant_id: c.merchant.clone(),
            reference: "R".into(),
            chain: "dev".into(),
            token: Some("USDC".into()),
            address: BOB.into(),
            expected_amount: "1".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(
        e.message.contains("token:")
            && e.message.contains("DAI, USDT")
            && e.message.contains("\"USDC\""),
        "{}",
        e.message
    );
    let _ = &c.dai;
}
