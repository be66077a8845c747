//! The scanner: exact confirmation depth, exact decimal classification,
//! expiry, and state + event + delivery written together.

use payhook::ops::payments::{self, NewPayment};
use payhook::scanner::scan_once;
use payhook::store;

use crate::support::Env;

async fn status(env: &Env, id: &payhook::ids::PaymentId) -> &'static str {
    store::payments::get(&env.store, id)
        .await
        .unwrap()
        .status
        .as_str()
}

#[tokio::test]
async fn confirms_exactly_at_the_configured_depth() {
    let env = Env::new().await;
    // The Postgres pass really runs on Postgres.
    assert_eq!(env.store.is_postgres(), crate::support::on_postgres());
    let m = env.merchant("http://127.0.0.1:9/none").await;
    env.set_head(1000).await;
    let id = env
        .detected_payment(&m.merchant.id, "D1", "5", "5", 1000)
        .await;
    env.set_head(1010).await; // 11 confirmations of 12
    assert_eq!(scan_once(&env.store, &env.cfg).await.unwrap().total(), 0);
    assert_eq!(status(&env, &id).await, "detected");
    env.set_head(1011).await; // 12
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(r.confirmed, 1);
    assert_eq!(status(&env, &id).await, "confirmed");
    // A second scan changes nothing: no double confirmation.
    assert_eq!(scan_once(&env.store, &env.cfg).await.unwrap().total(), 0);
    let confirmed_events = env
        .count("SELECT COUNT(*) FROM events WHERE type = 'payment.confirmed'")
        .await;
    assert_eq!(confirmed_events, 1);
    // Every event has its delivery and its queued job.
    assert_eq!(env.count("SELECT COUNT(*) FROM deliveries").await, 2);
    assert_eq!(
        payhook::store::jobs::count(env.store.db(), payhook::domain::Lane::First)
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn classifies_by_exact_decimal_comparison_at_the_last_digit() {
    let env = Env::new().await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    env.set_head(1).await;
    let exp = "123456789012.000000000000000001";
    let exact = env
        .detected_payment(
            &m.merchant.id,
            "E",
            exp,
            "123456789012.0000000000000000010",
            1,
        )
        .await;
    let under = env
        .detected_payment(
            &m.merchant.id,
            "U",
            exp,
            "123456789012.000000000000000000",
            1,
        )
        .await;
    let over = env
        .detected_payment(
            &m.merchant.id,
            "O",
            exp,
            "123456789012.000000000000000002",
            1,
        )
        .await;
    env.set_head(12).await;
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!((r.confirmed, r.underpaid, r.overpaid), (1, 1, 1));
    assert_eq!(status(&env, &exact).await, "confirmed");
    assert_eq!(status(&env, &under).await, "underpaid");
    assert_eq!(status(&env, &over).await, "overpaid");
    let body: String = payhook::store::query(payhook::store::Sql::both(
        "SELECT payload FROM events WHERE type = 'payment.underpaid'",
    ))
    .scalar(env.store.db())
    .await
    .unwrap();
    // Amounts travel as the exact strings given.
    assert!(body.contains(r#""expected_amount":"123456789012.000000000000000001","received_amount":"123456789012.000000000000000000""#), "{body}");
}

#[tokio::test]
async fn pending_payment_expires_with_an_event() {
    let env = Env::new().await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    let p = payments::create(
        &env.store,
        &env.cfg,
        NewPayment {
            merchant_id: m.merchant.id.clone(),
            reference: "X1".into(),
            chain: "ethereum".into(),
            address: "0xabc".into(),
            expected_amount: "10".into(),
            expires_at: Some("2020-01-01T00:00:00Z".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let r = scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(r.expired, 1);
    assert_eq!(status(&env, &p.id).await, "expired");
    assert_eq!(
        env.count("SELECT COUNT(*) FROM events WHERE type = 'payment.expired'")
            .await,
        1
    );
}

#[tokio::test]
async fn bad_payment_input_is_refused_with_the_field_named() {
    let env = Env::new().await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    let base = || NewPayment {
        merchant_id: m.merchant.id.clone(),
        reference: "R".into(),
        chain: "ethereum".into(),
        address: "0xabc".into(),
        expected_amount: "10".into(),
        ..Default::default()
    };
    let cases = [
        (
            NewPayment {
                expected_amount: "1e5".into(),
                ..base()
            },
            "expected_amount",
        ),
        (
            NewPayment {
                expected_amount: "-1".into(),
                ..base()
            },
            "expected_amount",
        ),
        (
            NewPayment {
                chain: "dogecoin".into(),
                ..base()
            },
            "chain",
        ),
        (
            NewPayment {
                expires_at: Some("tomorrow".into()),
                ..base()
            },
            "expires_at",
        ),
        (
            NewPayment {
                merchant_id: "mer_nope".into(),
                ..base()
            },
            "mer_nope",
        ),
        // A NUL cannot be stored on Postgres: refused on both backends.
        (
            NewPayment {
                reference: "a\0b".into(),
                ..base()
            },
            "reference: expected 1 to 200 characters, no control characters",
        ),
    ];
    for (input, field) in cases {
        let e = payments::create(&env.store, &env.cfg, input)
            .await
            .unwrap_err();
        assert!(e.message.contains(field), "{field}: {}", e.message);
        assert_eq!(e.exit_code(), 2);
    }
    payments::create(&env.store, &env.cfg, base())
        .await
        .unwrap();
    let dup = payments::create(&env.store, &env.cfg, base())
        .await
        .unwrap_err();
    assert!(dup.message.contains("reference"), "{}", dup.message);
    let e = payhook::ops::merchants::create(
        &env.store,
        &env.cfg,
        payhook::ops::merchants::NewMerchant {
            name: "shop\0".into(),
            webhook_url: "http://127.0.0.1:9/none".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(e.message.starts_with("name: "), "{}", e.message);
    assert_eq!(e.exit_code(), 2);
}

/// More concurrent detections than pooled connections, next to scans: each
/// holds a write transaction and must read only through it (a read from the
/// pool would wait on callers that wait on the write lock: on SQLite, a
/// stall until the busy timeout and "database is locked").
#[tokio::test]
async fn concurrent_detections_beyond_the_pool_size_all_succeed() {
    let env = Env::with(|c| c.database.max_connections = 2).await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    env.set_head(1000).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let p = payments::create(
            &env.store,
            &env.cfg,
            NewPayment {
                merchant_id: m.merchant.id.clone(),
                reference: format!("C{i}"),
                chain: "ethereum".into(),
                token: Some("USDT".into()),
                address: "0xabc".into(),
                expected_amount: "5".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        ids.push(p.id);
    }
    let detects = futures::future::join_all(ids.iter().enumerate().map(|(i, id)| {
        payments::detect(
            &env.store,
            &env.cfg,
            id,
            payments::Detection {
                tx_hash: format!("0xc{i}"),
                amount: "5".into(),
                block_number: 980,
            },
        )
    }));
    let scans = futures::future::join_all((0..4).map(|_| scan_once(&env.store, &env.cfg)));
    let (detects, scans) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures::future::join(detects, scans),
    )
    .await
    .expect("detections stalled");
    for r in detects {
        r.unwrap();
    }
    for r in scans {
        r.unwrap();
    }
    // Whatever the scans did not confirm, one more scan does.
    scan_once(&env.store, &env.cfg).await.unwrap();
    assert_eq!(
        env.count("SELECT COUNT(*) FROM payments WHERE status = 'confirmed'")
            .await,
        24
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM events WHERE type = 'payment.confirmed'")
            .await,
        24
    );
}
