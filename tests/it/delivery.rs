//! Signed delivery to real receivers: Standard Webhooks verified by the
//! official `standardwebhooks` crate, the hex scheme by an independent HMAC,
//! extra static headers, no redirects followed.

use std::time::Duration;

use hmac::{Hmac, Mac};
use payhook::ops::merchants::NewMerchant;
use sha2::Sha256;

use crate::support::{wait_for, Env, Receiver, Reply};

#[tokio::test]
async fn standard_signature_verifies_with_official_library() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = env.merchant(&rx.url("/hooks")).await;
    env.set_head(100).await;
    env.detected_payment(&m.merchant.id, "ORDER-1", "100.00", "100.00", 100)
        .await;
    env.set_head(111).await;
    let pipeline = env.start();

    let hits = wait_for(
        Duration::from_secs(20),
        "detected + confirmed deliveries",
        || {
            let rx = rx.clone();
            async move { (rx.hits("/hooks").len() >= 2).then(|| rx.hits("/hooks")) }
        },
    )
    .await;
    pipeline.stop().await.unwrap();

    let wh = standardwebhooks::Webhook::new(m.secret.expose()).unwrap();
    let mut types = vec![];
    for hit in &hits {
        wh.verify(&hit.body, &hit.headers)
            .expect("official library verifies payhook's signature");
        let body = hit.json();
        assert_eq!(hit.header("webhook-id"), body["id"].as_str().unwrap());
        assert!(hit.header("webhook-id").starts_with("evt_"));
        assert_eq!(hit.header("content-type"), "application/json");
        assert!(hit.header("user-agent").starts_with("payhook/"));
        assert!(hit.header("webhook-signature").starts_with("v1,"));
        // Compact JSON with the contract's key order.
        let text = std::str::from_utf8(&hit.body).unwrap();
        assert!(!text.contains(": ") && !text.contains(", "), "{text}");
        assert!(text.starts_with(r#"{"id":"evt_"#) && text.contains(r#","type":"payment."#));
        assert_eq!(body["data"]["expected_amount"], "100.00");
        types.push(body["type"].as_str().unwrap().to_string());
    }
    types.sort();
    assert_eq!(types, ["payment.confirmed", "payment.detected"]);
    let confirmed = hits
        .iter()
        .map(|h| h.json())
        .find(|b| b["type"] == "payment.confirmed")
        .unwrap();
    assert_eq!(confirmed["data"]["confirmations"], 12);
    assert_eq!(confirmed["data"]["block_number"], 100);
    assert_eq!(confirmed["data"]["status"], "confirmed");

    // A tampered body does not verify.
    let mut tampered = hits[0].body.to_vec();
    tampered.push(b' ');
    assert!(wh.verify(&tampered, &hits[0].headers).is_err());
}

#[tokio::test]
async fn hex_scheme_verifies_with_independent_hmac_and_sends_extra_headers() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = env
        .merchant_with(NewMerchant {
            name: "Legacy Shop".into(),
            webhook_url: rx.url("/legacy"),
            signature_scheme: Some("hex".into()),
            signature_header: Some("X-Pactapay-Signature".into()),
            signature_prefix: Some("sha256=".into()),
            headers: Some([("API-Key".to_string(), "k-123-secret".to_string())].into()),
            ..Default::default()
        })
        .await;
    let (event_id, _) = payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    let hit = wait_for(Duration::from_secs(20), "test event", || {
        let rx = rx.clone();
        async move { rx.hits("/legacy").first().cloned() }
    })
    .await;
    pipeline.stop().await.unwrap();

    let mut mac = Hmac::<Sha256>::new_from_slice(m.secret.expose().as_bytes()).unwrap();
    mac.update(&hit.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(hit.header("x-pactapay-signature"), expected);
    assert_eq!(hit.header("api-key"), "k-123-secret");
    assert_eq!(hit.header("webhook-id"), event_id.as_str());
    assert!(!hit.header("webhook-timestamp").is_empty());
    assert!(
        hit.header("webhook-signature").is_empty(),
        "hex scheme sends no standard signature"
    );
    assert_eq!(hit.json()["type"], "webhook.test");
}

#[tokio::test]
async fn redirect_is_a_failed_attempt_recording_the_location() {
    let env = Env::with(|c| c.retry.max_attempts = 1).await;
    let rx = Receiver::start().await;
    rx.script(
        "/moved",
        vec![Reply {
            status: 302,
            headers: vec![("location", rx.url("/elsewhere"))],
            body: None,
        }],
    );
    let m = env.merchant(&rx.url("/moved")).await;
    payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    wait_for(Duration::from_secs(20), "dead letter", || async {
        (env.count("SELECT COUNT(*) FROM dead_letters").await == 1).then_some(())
    })
    .await;
    pipeline.stop().await.unwrap();
    assert!(
        rx.hits("/elsewhere").is_empty(),
        "redirect must not be followed"
    );
    let (kind, error, code): (String, String, i64) = payhook::store::query(
        payhook::store::Sql::both("SELECT error_kind, error, status_code FROM delivery_attempts"),
    )
    .fetch_one(env.store.db())
    .await
    .unwrap();
    assert_eq!((kind.as_str(), code), ("redirect", 302));
    assert!(error.contains("/elsewhere"), "{error}");
}

#[tokio::test]
async fn event_filter_skips_unsubscribed_types_but_test_always_goes() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = env
        .merchant_with(NewMerchant {
            name: "Picky".into(),
            webhook_url: rx.url("/picky"),
            event_types: Some(vec!["payment.confirmed".into()]),
            ..Default::default()
        })
        .await;
    env.set_head(5).await;
    env.detected_payment(&m.merchant.id, "P1", "1", "1", 5)
        .await;
    payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    env.set_head(16).await;
    let pipeline = env.start();
    wait_for(Duration::from_secs(20), "two deliveries", || {
        let rx = rx.clone();
        async move { (rx.hits("/picky").len() >= 2).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    pipeline.stop().await.unwrap();
    let mut types: Vec<String> = rx
        .hits("/picky")
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["payment.confirmed", "webhook.test"]);
    // The detected event is stored (audit) but has no delivery.
    assert_eq!(env.count("SELECT COUNT(*) FROM events").await, 3);
    assert_eq!(env.count("SELECT COUNT(*) FROM deliveries").await, 2);
}
