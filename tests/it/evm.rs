//! Chains with a node (`chains.<name>.rpc_url`), against a real local EVM
//! node (ganache): real transactions, blocks mined on demand, a reorg made
//! with evm_snapshot / evm_revert, a reverting contract, a node stopped and
//! started again; and nodes that misbehave in every way we know.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use payhook::config::ChainConfig;
use payhook::ops::payments::{self, Detection, NewPayment};
use payhook::scanner::scan_once;
use payhook::store;
use serde_json::{json, Value};

use crate::ganache::{Ganache, ALICE, BOB, CAROL, HALF_ETH, ONE_ETH};
use crate::support::{black_hole, payhook_bin, raw_server, wait_for, write_config, Env, Receiver};

const DEPTH: u32 = 3;

async fn env_with_node(url: &str) -> Env {
    let url = url.to_string();
    Env::with(move |c| {
        c.chains.insert(
            "dev".into(),
            ChainConfig {
                confirmations: DEPTH,
                rpc_url: Some(payhook::ids::Secret::new(url)),
                tokens: Default::default(),
            },
        );
    })
    .await
}

/// A payment on chain `dev` (native coin unless `token`), detected with
/// the gateway's report of `tx_hash`, `amount` and `block`.
#[allow(clippy::too_many_arguments)]
async fn detected(
    env: &Env,
    merchant_id: &payhook::ids::MerchantId,
    reference: &str,
    token: Option<&str>,
    address: &str,
    expected: &str,
    tx_hash: &str,
    amount: &str,
    block: i64,
) -> payhook::ids::PaymentId {
    let p = payments::create(
        &env.store,
        &env.cfg,
        NewPayment {
            merchant_id: merchant_id.clone(),
            reference: reference.into(),
            chain: "dev".into(),
            token: token.map(String::from),
            address: address.into(),
            expected_amount: expected.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    payments::detect(
        &env.store,
        &env.cfg,
        &p.id,
        Detection {
            tx_hash: tx_hash.into(),
            amount: amount.into(),
            block_number: block,
        },
    )
    .await
    .unwrap();
    p.id
}

async fn payment(env: &Env, id: &payhook::ids::PaymentId) -> store::payments::Payment {
    store::payments::get(&env.store, id).await.unwrap()
}

/// Bodies of the events of one type for a payment, oldest first.
async fn events_of(env: &Env, payment_id: &payhook::ids::PaymentId, kind: &str) -> Vec<Value> {
    let rows: Vec<String> = payhook::store::query(payhook::store::Sql::both(
        "SELECT payload FROM events WHERE payment_id = $1 AND type = $2 ORDER BY id",
    ))
    .bind(payment_id)
    .bind(kind)
    .scalars(env.store.db())
    .await
    .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

#[tokio::test]
async fn confirms_at_exactly_the_configured_depth_counted_on_the_node() {
    let node = Ganache::start().await;
    let env = env_with_node(&node.url()).await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    let hash = node.send(ALICE, BOB, ONE_ETH).await;
    let block = node.block_of(&hash).await;
    // The gateway reports the recipient in mixed case and the amount as "1.00".
    let id = detected(
        &env,
        &m.merchant.id,
        "N1",
        None,
        "0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0",
        "1",
        &hash,
        "1.00",
        block,
    )
    .await;

    for _ in 1..DEPTH {
        let r = scan_once(&env.store, &env.cfg).await.unwrap();
        assert_eq!(r.total(), 0, "{r:?}");
        assert!(r.node_errors.is_empty(), "{r:?}");
        assert_eq!(payment(&env, &id).await.status.as_str(), "detected");
        node.mine(1).await;
    }
    // head = block + DEPTH - 1: exactly DEPTH confirmations.
    assert_eq!(node.head().await, block + DEPTH as i64 - 1);
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(r.confirmed, 1, "{r:?}");
    let p = payment(&env, &id).await;
    assert_eq!(p.status.as_str(), "confirmed");
    assert_eq!(
        p.received_amount.as_deref(),
        Some("1.00"),
        "same value: reported string kept"
    );
    assert_eq!(p.reported_amount, None);
    let ev = &events_of(&env, &id, "payment.confirmed").await[0];
    assert_eq!(ev["data"]["confirmations"], json!(DEPTH));
    assert_eq!(ev["data"]["block_number"], json!(block));
    assert!(ev["data"].get("reported_amount").is_none(), "{ev}");
    // Nothing twice.
    assert_eq!(scan_once(&env.store, &env.cfg).await.unwrap().total(), 0);
    // A sighting that is not a transaction hash is refused on a node chain
    // (it would fail every lookup batch of the chain).
    let p = payments::create(
        &env.store,
        &env.cfg,
        NewPayment {
            merchant_id: m.merchant.id.clone(),
            reference: "BADHASH".into(),
            chain: "dev".into(),
            address: BOB.into(),
            expected_amount: "1".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let bad = Detection {
        tx_hash: "deadbeef".into(),
        amount: "1".into(),
        block_number: 1,
    };
    let err = payments::detect(&env.store, &env.cfg, &p.id, bad)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("tx_hash: expected 0x and 64 hex digits"),
        "{err}"
    );
    // The head came from the node; setting it by hand is refused.
    let heads = store::chains::list(&env.store).await.unwrap();
    assert_eq!(
        heads.iter().find(|h| h.name == "dev").unwrap().head,
        node.head().await
    );
    let err = payments::set_head(&env.store, &env.cfg, "dev", 1_000_000)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("chains.dev.rpc_url"), "{err}");
    assert_eq!(err.code(), "conflict");
}

#[tokio::test]
async fn a_moved_transaction_is_counted_from_its_new_block() {
    let node = Ganache::start().await;
    let env = env_with_node(&node.url()).await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    node.mine(3).await;
    let hash = node.send(ALICE, BOB, ONE_ETH).await;
    let block = node.block_of(&hash).await;
    node.mine(DEPTH - 2).await;
    // The gateway saw it three blocks earlier (before a reorg moved it):
    // by the stored block it is due, by the block it is in now one short.
    let id = detected(
        &env,
        &m.merchant.id,
        "MV",
        None,
        BOB,
        "1",
        &hash,
        "1",
        block - 3,
    )
    .await;
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(r.total(), 0, "{r:?}");
    let p = payment(&env, &id).await;
    assert_eq!(
        (p.status.as_str(), p.block_number),
        ("detected", Some(block))
    );
    // One more block: exactly the depth counted from its new block.
    node.mine(1).await;
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(r.confirmed, 1, "{r:?}");
    assert_eq!(payment(&env, &id).await.block_number, Some(block));
}

#[tokio::test]
async fn a_reorg_reopens_the_payment_and_the_merchant_is_told() {
    let node = Ganache::start().await;
    let rx = Receiver::start().await;
    let env = env_with_node(&node.url()).await;
    let m = env.merchant(&rx.url("/hook")).await;
    node.mine(3).await;
    let snap = node.snapshot().await;
    let hash = node.send(ALICE, BOB, ONE_ETH).await;
    let block = node.block_of(&hash).await;
    let id = detected(
        &env,
        &m.merchant.id,
        "RG",
        None,
        BOB,
        "1",
        &hash,
        "1",
        block,
    )
    .await;
    let pipeline = env.start();
    // The scanner loop has seen the head at `block`.
    wait_for(Duration::from_secs(10), "the node's head stored", || {
        let env = &env;
        async move {
            let heads = store::chains::list(&env.store).await.unwrap();
            heads
                .iter()
                .any(|h| h.name == "dev" && h.head >= block)
                .then_some(())
        }
    })
    .await;
    // Reorg: the block with the transaction is gone; the new chain grows
    // past the old head and deep enough to have confirmed it.
    node.revert(&snap).await;
    assert_eq!(node.head().await, block - 1);
    node.mine(DEPTH + 3).await;
    wait_for(Duration::from_secs(20), "payment.reorged delivered", || {
        let rx = rx.clone();
        async move {
            rx.hits("/hook")
                .into_iter()
                .find(|h| h.json()["type"] == "payment.reorged")
        }
    })
    .await;
    let p = payment(&env, &id).await;
    assert_eq!(p.status.as_str(), "pending");
    assert_eq!(
        (p.tx_hash, p.block_number, p.detected_at),
        (None, None, None)
    );
    let ev = &events_of(&env, &id, "payment.reorged").await[0];
    assert_eq!(ev["data"]["status"], "pending");
    assert_eq!(
        ev["data"]["tx_hash"],
        json!(hash),
        "names the transaction that left"
    );
    assert_eq!(ev["data"]["reason"], "transaction_missing");
    assert!(events_of(&env, &id, "payment.confirmed").await.is_empty());

    // Paid again on the new chain: detected again and confirmed.
    let again = node.send(ALICE, BOB, ONE_ETH).await;
    let block2 = node.block_of(&again).await;
    payments::detect(
        &env.store,
        &env.cfg,
        &id,
        Detection {
            tx_hash: again.clone(),
            amount: "1".into(),
            block_number: block2,
        },
    )
    .await
    .unwrap();
    node.mine(DEPTH).await;
    wait_for(
        Duration::from_secs(20),
        "payment.confirmed delivered",
        || {
            let rx = rx.clone();
            async move {
                rx.hits("/hook")
                    .into_iter()
                    .find(|h| h.json()["type"] == "payment.confirmed")
            }
        },
    )
    .await;
    assert_eq!(payment(&env, &id).await.tx_hash, Some(again));
    assert_eq!(events_of(&env, &id, "payment.confirmed").await.len(), 1);
    pipeline.stop().await.unwrap();
}

#[tokio::test]
async fn failed_misdirected_and_short_transactions_are_caught() {
    let node = Ganache::start().await;
    let env = env_with_node(&node.url()).await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    let mid = &m.merchant.id;
    // A transaction that reverted (token transfers: see `tokens`).
    let reverter = node.deploy_reverter().await;
    let failed = node.send(ALICE, &reverter, "0x0").await;
    let fb = node.block_of(&failed).await;
    let failed_id = detected(&env, mid, "FAIL", None, &reverter, "5", &failed, "5", fb).await;
    // Native coin sent to Carol, reported as paying Bob.
    let wrong_to = node.send(ALICE, CAROL, ONE_ETH).await;
    let wb = node.block_of(&wrong_to).await;
    let wrong_id = detected(&env, mid, "WRONG", None, BOB, "1", &wrong_to, "1", wb).await;
    // Half an ether reported as one.
    let short = node.send(ALICE, BOB, HALF_ETH).await;
    let sb = node.block_of(&short).await;
    let short_id = detected(&env, mid, "SHORT", None, BOB, "1", &short, "1", sb).await;
    node.mine(DEPTH).await;

    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!((r.confirmed, r.underpaid, r.reorged), (0, 1, 2), "{r:?}");
    assert_eq!(payment(&env, &failed_id).await.status.as_str(), "pending");
    assert_eq!(payment(&env, &wrong_id).await.status.as_str(), "pending");
    let reasons = [
        &events_of(&env, &failed_id, "payment.reorged").await[0]["data"]["reason"],
        &events_of(&env, &wrong_id, "payment.reorged").await[0]["data"]["reason"],
    ];
    assert_eq!(
        reasons,
        [&json!("transaction_failed"), &json!("wrong_recipient")]
    );

    let p = payment(&env, &short_id).await;
    assert_eq!(p.status.as_str(), "underpaid");
    assert_eq!(p.received_amount.as_deref(), Some("0.5"));
    assert_eq!(p.reported_amount.as_deref(), Some("1"));
    let ev = &events_of(&env, &short_id, "payment.underpaid").await[0];
    assert_eq!(ev["data"]["received_amount"], "0.5");
    assert_eq!(ev["data"]["reported_amount"], "1");
    // Nothing more happens to any of them.
    node.mine(DEPTH).await;
    assert_eq!(scan_once(&env.store, &env.cfg).await.unwrap().total(), 0);
}

/// Every way a node can misbehave: nothing on its chain moves, the other
/// chain is confirmed in the same scan, and the scan reports the failure.
#[tokio::test]
async fn a_misbehaving_node_confirms_nothing_and_holds_up_nothing_else() {
    // Bound but never listening: connections are refused, and the port
    // stays ours (another test's server cannot take it meanwhile).
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused = closed.local_addr().unwrap();
    let (hole, _) = black_hole().await;
    let garbage = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n",
        b"hello world".to_vec(),
        false,
    )
    .await;
    let rpc_error = {
        let body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"rate limited"}}"#;
        let head: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_boxed_str(),
        );
        raw_server(head, body.to_vec(), false).await
    };
    let http_502 = raw_server(
        "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n",
        Vec::new(),
        false,
    )
    .await;
    let cases = [
        (format!("http://{refused}/"), "unreachable"),
        (format!("http://{hole}/"), "timeout"),
        (format!("http://{garbage}/"), "bad_response"),
        (format!("http://{rpc_error}/"), "rpc_error"),
        (format!("http://{http_502}/"), "http_status"),
    ];
    payhook::metrics::install();
    for (i, (url, kind)) in cases.iter().enumerate() {
        let env = env_with_node(url).await;
        let m = env.merchant("http://127.0.0.1:9/none").await;
        // Chain `dev` has the bad node; `ethereum` has its head set by hand.
        let stuck = detected(
            &env,
            &m.merchant.id,
            "STUCK",
            None,
            BOB,
            "1",
            &format!("0x{}", "ab".repeat(32)),
            "1",
            1,
        )
        .await;
        env.set_head(100).await;
        let fine = env
            .detected_payment(&m.merchant.id, "FINE", "1", "1", 80)
            .await;
        let r = scan_once(&env.store, &env.cfg).await.unwrap();
        assert_eq!(r.confirmed, 1, "case {i} ({kind}): {r:?}");
        assert_eq!(payment(&env, &fine).await.status.as_str(), "confirmed");
        assert_eq!(
            payment(&env, &stuck).await.status.as_str(),
            "detected",
            "case {i}"
        );
        assert_eq!(r.node_errors.len(), 1, "case {i}: {r:?}");
        assert_eq!(r.node_errors[0].chain, "dev");
        assert_eq!(r.node_errors[0].kind, *kind, "case {i}: {r:?}");
        let metrics = payhook::metrics::render(&env.store).await.unwrap();
        let counted = format!("payhook_chain_node_errors_total{{chain=\"dev\",kind=\"{kind}\"}}");
        assert!(
            metrics.contains(&counted),
            "case {i}: {counted} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_head_going_backwards_confirms_nothing_until_it_catches_up() {
    let node = Ganache::start().await;
    let env = env_with_node(&node.url()).await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    let hash = node.send(ALICE, BOB, ONE_ETH).await;
    let block = node.block_of(&hash).await;
    let id = detected(&env, &m.merchant.id, "B", None, BOB, "1", &hash, "1", block).await;
    node.mine(DEPTH).await;
    // Another node (or this one, earlier) showed a higher head.
    let high = node.head().await + 10;
    store::chains::advance_head(&env.store, "dev", high, 0)
        .await
        .unwrap();
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(r.total(), 0, "{r:?}");
    assert_eq!(r.node_errors[0].kind, "head_backwards");
    assert_eq!(payment(&env, &id).await.status.as_str(), "detected");
    node.mine(10).await;
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(r.confirmed, 1, "{r:?}");
}

/// A proxy in front of the node, on any path (hosted nodes put an API key
/// there), counting HTTP requests and JSON-RPC calls; 502 while the node is
/// down.
async fn counting_proxy(target: String) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use axum::http::StatusCode;
    let requests = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, c) = (requests.clone(), calls.clone());
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |body: String| {
        let (r, c, http, target) = (r.clone(), c.clone(), http.clone(), target.clone());
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            c.fetch_add(v.as_array().map_or(1, Vec::len), Ordering::SeqCst);
            let sent = http
                .post(&target)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(resp) => match resp.text().await {
                    Ok(text) => (StatusCode::OK, text),
                    Err(_) => (StatusCode::BAD_GATEWAY, String::new()),
                },
                Err(_) => (StatusCode::BAD_GATEWAY, String::new()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), requests, calls)
}

/// A scan of 1,000 due payments is a handful of HTTP requests: one for the
/// head, one batch per 100 payments.
#[tokio::test]
async fn a_scan_of_a_thousand_due_payments_makes_eleven_requests() {
    const N: usize = 1000;
    let node = Ganache::start().await;
    let (proxy, requests, calls) = counting_proxy(node.url()).await;
    let env = env_with_node(&proxy).await;
    let m = env
        .merchant_with(payhook::ops::merchants::NewMerchant {
            name: "Busy".into(),
            webhook_url: "http://127.0.0.1:9/none".into(),
            event_types: Some(vec!["payment.confirmed".into()]),
            ..Default::default()
        })
        .await;
    // N transfers in one block: miner stopped, one batch of sends, one mine.
    node.rpc("miner_stop", json!([])).await;
    let sends: Vec<Value> = (0..N)
        .map(|i| {
            json!({"jsonrpc":"2.0","id":i,"method":"eth_sendTransaction",
            "params":[{"from": ALICE, "to": BOB, "value": "0x1", "gas": "0x5208"}]})
        })
        .collect();
    let answers = reqwest::Client::new()
        .post(node.url())
        .header("content-type", "application/json")
        .body(Value::Array(sends).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let answers: Vec<Value> = serde_json::from_str(&answers).unwrap();
    node.mine(1).await;
    node.rpc("miner_start", json!([])).await;
    let block = node.head().await;
    for (i, a) in answers.iter().enumerate() {
        let hash = a["result"].as_str().unwrap_or_else(|| panic!("{a}"));
        let wei = "0.000000000000000001";
        detected(
            &env,
            &m.merchant.id,
            &format!("P{i}"),
            None,
            BOB,
            wei,
            hash,
            wei,
            block,
        )
        .await;
    }
    node.mine(DEPTH).await;
    let (r0, c0) = (
        requests.load(Ordering::SeqCst),
        calls.load(Ordering::SeqCst),
    );
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(r.confirmed, N as u64, "{r:?}");
    let made = requests.load(Ordering::SeqCst) - r0;
    let inside = calls.load(Ordering::SeqCst) - c0;
    println!("scan of {N} due payments: {made} HTTP requests, {inside} JSON-RPC calls");
    assert_eq!(made, 1 + N / 100);
    assert_eq!(inside, 1 + 2 * N);
}

/// A real `payhook serve` whose chain node is stopped for a while and
/// started again: the admin API and the other chain keep working, the
/// outage is logged once, and the payment is confirmed after it.
#[tokio::test]
async fn the_node_stopped_and_restarted_mid_run_is_survived() {
    let mut node = Ganache::start().await;
    let rx = Receiver::start().await;
    // Hosted nodes carry an API key in the path: it must never be logged.
    let (proxy, _, _) = counting_proxy(node.url()).await;
    let env = env_with_node(&format!("{proxy}v3/key-7f3a9c2e")).await;
    let m = env.merchant(&rx.url("/hook")).await;
    let hash = node.send(ALICE, BOB, ONE_ETH).await;
    let block = node.block_of(&hash).await;
    let id = detected(&env, &m.merchant.id, "S", None, BOB, "1", &hash, "1", block).await;
    let config = write_config(env.dir.path(), &env.cfg);
    let log_path = env.dir.path().join("serve.log");
    let mut child = Command::new(payhook_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    // Serving, and the node's head has been read.
    wait_for(
        Duration::from_secs(15),
        "the head read from the node",
        || {
            let env = &env;
            async move {
                let heads = store::chains::list(&env.store).await.unwrap();
                heads
                    .iter()
                    .any(|h| h.name == "dev" && h.head >= block)
                    .then_some(())
            }
        },
    )
    .await;
    node.stop();
    // During the outage (about 10 scan intervals and more): the other chain
    // confirms and delivers.
    env.set_head(100).await;
    let other = env
        .detected_payment(&m.merchant.id, "OTHER", "1", "1", 50)
        .await;
    wait_for(
        Duration::from_secs(15),
        "the other chain's payment delivered",
        || {
            let rx = rx.clone();
            async move {
                rx.hits("/hook").into_iter().find(|h| {
                    h.json()["type"] == "payment.confirmed"
                        && h.json()["data"]["reference"] == "OTHER"
                })
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(payment(&env, &id).await.status.as_str(), "detected");
    assert_eq!(payment(&env, &other).await.status.as_str(), "confirmed");
    node.restart().await;
    node.mine(DEPTH).await;
    wait_for(
        Duration::from_secs(40),
        "the payment confirmed after the outage",
        || {
            let rx = rx.clone();
            async move {
                rx.hits("/hook").into_iter().find(|h| {
                    h.json()["type"] == "payment.confirmed" && h.json()["data"]["reference"] == "S"
                })
            }
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let failing = log.matches("chain node failing").count();
    let back = log.matches("chain node answering again").count();
    assert_eq!((failing, back), (1, 1), "one line per outage:\n{log}");
    assert!(!log.contains("key-7f3a9c2e"), "{log}");
}
