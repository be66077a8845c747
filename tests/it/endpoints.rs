//! Several endpoints per merchant over the admin API and real receivers:
//! fan-out by event filter, each endpoint signing with its own secret and
//! scheme, a 410 disabling one endpoint alone, recovery of its dead letters,
//! merchant keys confined to their own endpoints, and the upgrade of a
//! database written by the release before endpoints existed.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::admin::Api;
use crate::support::{wait_for, Env, Receiver, Reply};

/// Creates a merchant whose primary endpoint is `primary`; returns its id,
/// primary endpoint id and secret.
async fn merchant(api: &Api, primary: &str) -> (String, String, String) {
    let (st, m) = api
        .post(
            "/v1/merchants",
            json!({"name": "Multi", "webhook_url": primary}),
        )
        .await;
    assert_eq!(st, 201, "{m}");
    (
        m["id"].as_str().unwrap().to_string(),
        m["endpoint_id"].as_str().unwrap().to_string(),
        m["secret"].as_str().unwrap().to_string(),
    )
}

async fn add_endpoint(api: &Api, merchant_id: &str, body: Value) -> (String, String) {
    let (st, ep) = api
        .post(&format!("/v1/merchants/{merchant_id}/endpoints"), body)
        .await;
    assert_eq!(st, 201, "{ep}");
    assert!(ep["secret"].as_str().unwrap().starts_with("whsec_"));
    (
        ep["id"].as_str().unwrap().to_string(),
        ep["secret"].as_str().unwrap().to_string(),
    )
}

/// A payment of the merchant detected at block 100, then confirmed.
async fn detect_and_confirm(env: &Env, merchant_id: &str, reference: &str) {
    env.set_head(100).await;
    env.detected_payment(&merchant_id.into(), reference, "5.00", "5.00", 100)
        .await;
    env.set_head(111).await;
}

fn verify_standard(secret: &str, hit: &crate::support::Hit) {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&hit.body, &hit.headers)
        .expect("the endpoint's own secret verifies");
}

fn hex_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn types_of(hits: &[crate::support::Hit]) -> Vec<String> {
    let mut t: Vec<String> = hits
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_receive_exactly_their_types_each_signed_with_its_own_secret() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    let rx = Receiver::start().await;
    let (mid, primary, primary_secret) = merchant(&api, &rx.url("/all")).await;
    let (confirmed_only, confirmed_secret) = add_endpoint(
        &api,
        &mid,
        json!({"url": rx.url("/confirmed"), "description": "fulfilment",
               "event_types": ["payment.confirmed"]}),
    )
    .await;
    let (hex_ep, hex_secret) = add_endpoint(
        &api,
        &mid,
        json!({"url": rx.url("/hex"), "signature_scheme": "hex",
               "event_types": ["payment.detected"], "headers": {"API-Key": "k-123"}}),
    )
    .await;
    let (st, list) = api.get(&format!("/v1/merchants/{mid}/endpoints")).await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&primary, &confirmed_only, &hex_ep], "primary first");
    assert!(list["data"][2].get("secret").is_none(), "{list}");

    let pipeline = env.start();
    detect_and_confirm(&env, &mid, "MULTI-1").await;
    wait_for(Duration::from_secs(20), "4 deliveries", || {
        let rx = rx.clone();
        async move { (rx.all_hits().len() >= 4).then_some(()) }
    })
    .await;
    // Nothing else arrives: a short grace for a stray fifth.
    tokio::time::sleep(Duration::from_millis(500)).await;
    pipeline.stop().await.unwrap();

    let all = rx.hits("/all");
    assert_eq!(types_of(&all), ["payment.confirmed", "payment.detected"]);
    all.iter().for_each(|h| verify_standard(&primary_secret, h));
    let confirmed = rx.hits("/confirmed");
    assert_eq!(types_of(&confirmed), ["payment.confirmed"]);
    verify_standard(&confirmed_secret, &confirmed[0]);
    assert!(
        standardwebhooks::Webhook::new(&primary_secret)
            .unwrap()
            .verify(&confirmed[0].body, &confirmed[0].headers)
            .is_err(),
        "another endpoint's secret does not verify"
    );
    let hex = rx.hits("/hex");
    assert_eq!(types_of(&hex), ["payment.detected"]);
    assert_eq!(
        hex[0].header("x-payhook-signature"),
        format!("sha256={}", hex_signature(&hex_secret, &hex[0].body))
    );
    assert_eq!(hex[0].header("api-key"), "k-123");
    assert!(rx.all_hits().len() == 4, "{:?}", types_of(&rx.all_hits()));
    // The same event has the same webhook-id at every endpoint.
    let detected_id = all
        .iter()
        .find(|h| h.json()["type"] == "payment.detected")
        .unwrap()
        .header("webhook-id");
    assert_eq!(hex[0].header("webhook-id"), detected_id);

    // The delivery list filters by endpoint.
    let (st, mine) = api
        .get(&format!("/v1/deliveries?endpoint_id={confirmed_only}"))
        .await;
    assert_eq!(st, 200);
    let rows = mine["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{mine}");
    assert_eq!(rows[0]["endpoint_id"], json!(confirmed_only));
    // The merchant shows its primary endpoint as before.
    let (_, m) = api.get(&format!("/v1/merchants/{mid}")).await;
    assert_eq!(m["webhook_url"], json!(rx.url("/all")));
    assert_eq!(m["endpoint_id"], json!(primary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_one_endpoint_and_recover_resends_its_dead_letters() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    let rx = Receiver::start().await;
    rx.script("/gone", vec![410.into(), Reply::from(200)]);
    let (mid, primary, _) = merchant(&api, &rx.url("/a")).await;
    let (gone, gone_secret) = add_endpoint(&api, &mid, json!({"url": rx.url("/gone")})).await;
    let (_third, _) = add_endpoint(&api, &mid, json!({"url": rx.url("/c")})).await;
    let since = payhook::time::rfc3339(payhook::time::now_ms() - 1_000);
    let pipeline = env.start();

    env.set_head(100).await;
    env.detected_payment(&mid.as_str().into(), "GONE-1", "5.00", "5.00", 100)
        .await;
    let (_, ep) = wait_for(Duration::from_secs(20), "the 410 to disable", || {
        let api = &api;
        let path = format!("/v1/endpoints/{gone}");
        async move {
            let (st, ep) = api.get(&path).await;
            (ep["status"] == "disabled").then_some((st, ep))
        }
    })
    .await;
    assert!(
        ep["disabled_reason"].as_str().unwrap().contains("410"),
        "{ep}"
    );
    let detected_id = rx.hits("/gone")[0].header("webhook-id");
    // Its siblings keep receiving; the disabled one gets nothing new.
    env.set_head(111).await;
    wait_for(Duration::from_secs(20), "confirmations at a and c", || {
        let rx = rx.clone();
        async move { (rx.hits("/a").len() == 2 && rx.hits("/c").len() == 2).then_some(()) }
    })
    .await;
    assert_eq!(rx.hits("/gone").len(), 1);
    let (_, m) = api.get(&format!("/v1/merchants/{mid}")).await;
    assert_eq!(
        (m["status"].as_str(), m["endpoint_id"].as_str()),
        (Some("active"), Some(primary.as_str()))
    );

    // Its dead letter is filed under it.
    let (_, dlq) = api
        .get(&format!("/v1/dead-letters?endpoint_id={gone}"))
        .await;
    let rows = dlq["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{dlq}");
    assert_eq!(rows[0]["reason"], "gone");

    // Re-enable, recover: the same event again, with its original webhook-id.
    let (st, _) = api
        .post(&format!("/v1/endpoints/{gone}/enable"), json!({}))
        .await;
    assert_eq!(st, 200);
    let (st, rec) = api
        .post(
            &format!("/v1/endpoints/{gone}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!((st, rec["count"].as_i64()), (200, Some(1)), "{rec}");
    let again = wait_for(Duration::from_secs(20), "the recovered delivery", || {
        let rx = rx.clone();
        async move { (rx.hits("/gone").len() == 2).then(|| rx.hits("/gone")[1].clone()) }
    })
    .await;
    assert_eq!(again.header("webhook-id"), detected_id);
    verify_standard(&gone_secret, &again);
    // Recovering again finds nothing left to resubmit.
    let (_, rec) = api
        .post(
            &format!("/v1/endpoints/{gone}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(rec["count"], 0);

    // Health: attempts over 24 h, a success since the 410.
    let (st, health) = api.get(&format!("/v1/endpoints/{gone}/health")).await;
    assert_eq!(st, 200, "{health}");
    assert_eq!(health["attempts_24h"], 2, "{health}");
    assert_eq!(health["succeeded_24h"], 1, "{health}");
    assert_eq!(health["circuit"], "closed");

    // The secret can be revealed; who looked is audited, never the secret.
    let (st, shown) = api.get(&format!("/v1/endpoints/{gone}/secret")).await;
    assert_eq!(
        (st, shown["secret"].as_str()),
        (200, Some(gone_secret.as_str()))
    );
    let (_, log) = api.get("/v1/audit?limit=100").await;
    let text = log.to_string();
    for action in [
        "endpoint.create",
        "endpoint.enable",
        "endpoint.recover",
        "endpoint.reveal_secret",
    ] {
        assert!(text.contains(action), "{action} not audited: {text}");
    }
    assert!(!text.contains(&gone_secret), "a secret in the audit log");
    pipeline.stop().await.unwrap();
}

#[tokio::test]
async fn deleting_an_endpoint_dead_letters_its_pending_deliveries() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    let (mid, _, _) = merchant(&api, "http://127.0.0.1:9/a").await;
    let (doomed, _) = add_endpoint(&api, &mid, json!({"url": "http://127.0.0.1:9/b"})).await;
    // No worker runs: the test event waits, pending.
    let (st, _) = api
        .post(&format!("/v1/endpoints/{doomed}/test"), json!({}))
        .await;
    assert_eq!(st, 202);
    let (st, gone) = api
        .call(Method::DELETE, &format!("/v1/endpoints/{doomed}"), None)
        .await;
    assert_eq!(
        (st, gone["dead_lettered"].as_i64()),
        (200, Some(1)),
        "{gone}"
    );
    let (st, _) = api.get(&format!("/v1/endpoints/{doomed}")).await;
    assert_eq!(st, 404);
    let (_, dlq) = api
        .get(&format!("/v1/dead-letters?endpoint_id={doomed}"))
        .await;
    assert_eq!(dlq["data"][0]["reason"], "endpoint_disabled", "{dlq}");
    let dlq_id = dlq["data"][0]["id"].as_str().unwrap();
    // Resubmitting it names why it cannot go.
    let (st, err) = api
        .post(&format!("/v1/dead-letters/{dlq_id}/resubmit"), json!({}))
        .await;
    assert_eq!(st, 409, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("deleted"));
    // A bulk resubmission skips it (once) and ends.
    let (st, bulk) = api.post("/v1/dead-letters/resubmit", json!({})).await;
    assert_eq!((st, bulk["count"].as_i64()), (200, Some(0)), "{bulk}");
    // The hidden operator endpoint cannot be touched through the API.
    for path in ["rotate-secret", "enable", "disable", "test"] {
        let (st, _) = api
            .post(&format!("/v1/endpoints/ep_operator/{path}"), json!({}))
            .await;
        assert_eq!(st, 404, "{path}");
    }
    // Bad input names the field.
    let (st, err) = api
        .post(
            &format!("/v1/merchants/{mid}/endpoints"),
            json!({"url": "ftp://x", "event_types": ["payment.confirmed"]}),
        )
        .await;
    assert_eq!(st, 422, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().starts_with("url"));
    let (st, err) = api
        .post(
            &format!("/v1/merchants/{mid}/endpoints"),
            json!({"url": "http://127.0.0.1:9/c", "event_types": ["payment.nope"]}),
        )
        .await;
    assert_eq!(st, 422, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("event_types"));
}

#[tokio::test]
async fn a_merchant_key_reaches_only_its_own_endpoints() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    let (a, a_ep, _) = merchant(&api, "http://127.0.0.1:9/a").await;
    let (b, b_ep, _) = merchant(&api, "http://127.0.0.1:9/b").await;
    let (st, key) = api
        .post(
            &format!("/v1/merchants/{a}/api-keys"),
            json!({"name": "ci"}),
        )
        .await;
    assert_eq!(st, 201);
    let key = key["key"].as_str().unwrap().to_string();
    let as_a = |m: Method, path: String, body: Option<Value>| {
        let api = &api;
        let key = key.clone();
        async move {
            let body = body.map(|b| b.to_string());
            api.call_with(m, &path, body.as_deref(), Some(&key)).await
        }
    };
    for (m, path, body) in [
        (Method::GET, format!("/v1/endpoints/{b_ep}"), None),
        (
            Method::PATCH,
            format!("/v1/endpoints/{b_ep}"),
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, format!("/v1/endpoints/{b_ep}"), None),
        (Method::GET, format!("/v1/endpoints/{b_ep}/secret"), None),
        (Method::GET, format!("/v1/endpoints/{b_ep}/health"), None),
        (
            Method::POST,
            format!("/v1/endpoints/{b_ep}/rotate-secret"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/endpoints/{b_ep}/disable"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/endpoints/{b_ep}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        (Method::GET, format!("/v1/merchants/{b}/endpoints"), None),
        (
            Method::POST,
            format!("/v1/merchants/{b}/endpoints"),
            Some(json!({"url": "http://127.0.0.1:9/x"})),
        ),
    ] {
        let (st, body) = as_a(m.clone(), path.clone(), body).await;
        assert_eq!(st, 404, "{m} {path}: {body}");
    }
    let (st, own) = as_a(Method::GET, format!("/v1/endpoints/{a_ep}"), None).await;
    assert_eq!((st, own["merchant_id"].as_str()), (200, Some(a.as_str())));
    let (st, added) = as_a(
        Method::POST,
        format!("/v1/merchants/{a}/endpoints"),
        Some(json!({"url": "http://127.0.0.1:9/a2"})),
    )
    .await;
    assert_eq!(st, 201, "{added}");
    let (_, log) = api.get("/v1/audit?action=endpoint.create").await;
    let key_id = log["data"][0]["actor"].as_str().unwrap();
    assert!(key_id.starts_with("key_"), "{log}");
    // B is untouched.
    let (_, b_shown) = api.get(&format!("/v1/endpoints/{b_ep}")).await;
    assert_eq!(b_shown["status"], "active");
    assert!(b_shown["description"].is_null());
}

/// A database written by the release before endpoints (migrations up to
/// 0008, a merchant with its sealed secret, a dead letter) upgrades: the
/// merchant's settings become its primary endpoint, and a receiver holding
/// the old secret still verifies, a resubmitted old dead letter included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_the_previous_release_upgrades_and_keeps_its_secret() {
    use payhook::store::{query, Sql, Store};
    let env = Env::new().await;
    let rx = Receiver::start().await;
    // A second database, built as the previous release left it.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::support::test_config(&dir.path().join("old.db"));
    if let Some(url) = crate::support::fresh_postgres_database().await {
        cfg.database.url = url;
    }
    drop(env);
    let old = Store::connect(&cfg).await.unwrap();
    old.migrate_to(8).await.unwrap();
    let secret = payhook::ids::new_secret();
    let keys = old.keys().unwrap();
    let sealed = keys.seal(&secret).unwrap();
    let headers = keys
        .seal(&payhook::ids::Secret::new(r#"{"API-Key":"legacy"}"#))
        .unwrap();
    let url = rx.url("/old");
    // The dead letter went to the merchant's URL of its time, since changed.
    let stale = rx.url("/stale");
    query(Sql::both(
        "INSERT INTO merchants (id, name, webhook_url, secret, headers, event_types, status, \
         created_at) VALUES ('mer_01OLDMERCHANT', 'Old Shop', $1, $2, $3, NULL, 'active', 1)",
    ))
    .bind(url.as_str())
    .bind(&sealed)
    .bind(&headers)
    .execute(old.db())
    .await
    .unwrap();
    query(Sql::both(
        "INSERT INTO events (id, merchant_id, payment_id, type, payload, created_at) \
         VALUES ('evt_01OLDEVENT', 'mer_01OLDMERCHANT', NULL, 'webhook.test', \
         '{\"id\":\"evt_01OLDEVENT\",\"type\":\"webhook.test\"}', 1)",
    ))
    .execute(old.db())
    .await
    .unwrap();
    query(Sql::both(
        "INSERT INTO deliveries (id, event_id, merchant_id, url, endpoint, status, attempts, \
         created_at, updated_at) VALUES ('dlv_01OLD', 'evt_01OLDEVENT', 'mer_01OLDMERCHANT', $1, \
         'x', 'dead', 3, 1, 1)",
    ))
    .bind(stale.as_str())
    .execute(old.db())
    .await
    .unwrap();
    query(Sql::both(
        "INSERT INTO dead_letters (id, delivery_id, event_id, merchant_id, url, attempts, reason, \
         dead_at) VALUES ('dlq_01OLD', 'dlv_01OLD', 'evt_01OLDEVENT', 'mer_01OLDMERCHANT', $1, 3, \
         'exhausted', 1)",
    ))
    .bind(stale.as_str())
    .execute(old.db())
    .await
    .unwrap();
    old.close().await;

    // This release opens it: migration 0009 runs.
    let store = Store::open(&cfg).await.unwrap();
    let m = payhook::store::merchants::get(&store, &"mer_01OLDMERCHANT".into())
        .await
        .unwrap();
    assert_eq!(m.endpoint_id.as_ref().unwrap().as_str(), "ep_01OLDMERCHANT");
    assert_eq!(m.webhook_url.as_deref(), Some(url.as_str()));
    assert_eq!(m.header_names, ["API-Key"]);
    let leftover: String = query(Sql::both("SELECT secret FROM merchants"))
        .scalar(store.db())
        .await
        .unwrap();
    assert_eq!(leftover, "", "the secret is not kept twice");
    let dl = payhook::store::dead_letters::get(&store, &"dlq_01OLD".into())
        .await
        .unwrap();
    assert_eq!(dl.endpoint_id.unwrap().as_str(), "ep_01OLDMERCHANT");

    let pipeline = payhook::pipeline::Pipeline::start(
        &store,
        &cfg,
        payhook::pipeline::Parts {
            scanner: false,
            sender: true,
        },
    )
    .unwrap();
    payhook::ops::merchants::send_test(&store, &m.id)
        .await
        .unwrap();
    payhook::delivery::dlq::resubmit(&store, &"dlq_01OLD".into())
        .await
        .unwrap();
    let hits = wait_for(Duration::from_secs(20), "two deliveries", || {
        let rx = rx.clone();
        async move { (rx.hits("/old").len() == 2).then(|| rx.hits("/old")) }
    })
    .await;
    pipeline.stop().await.unwrap();
    for hit in &hits {
        verify_standard(secret.expose(), hit);
        assert_eq!(hit.header("api-key"), "legacy");
    }
    assert!(hits
        .iter()
        .any(|h| h.header("webhook-id") == "evt_01OLDEVENT"));
    store.close().await;
}

/// Operator events (SPEC §9) for one endpoint's outage: `endpoint.failing`
/// once when its failures in a row reach the threshold, `dead_letter.created`
/// when a delivery is exhausted, `endpoint.recovered` at its next success;
/// each signed with `operator.secret`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_events_arrive_signed_and_failing_is_told_once_per_outage() {
    let rx = Receiver::start().await;
    let ops_secret = payhook::ids::new_secret();
    let ops_url = rx.url("/ops");
    let (url, secret) = (ops_url.clone(), ops_secret.clone());
    let env = Env::with(move |c| {
        c.operator.webhook_url = Some(payhook::ids::Secret::new(url));
        c.operator.secret = Some(secret);
        c.circuit.failure_threshold = 3;
        c.circuit.cooldown = payhook::config::HumanDuration(Duration::from_millis(500));
        c.retry.max_attempts = 4;
        c.retry.base = payhook::config::HumanDuration(Duration::from_millis(300));
    })
    .await;
    let now = payhook::time::now_ms();
    payhook::store::operator::sync(&env.store, &env.cfg.operator, now)
        .await
        .unwrap();
    rx.script(
        "/flaky",
        vec![500.into(); 4]
            .into_iter()
            .chain([Reply::from(200)])
            .collect(),
    );
    let m = env.merchant(&rx.url("/flaky")).await;
    let pipeline = env.start();
    payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let types = |rx: &Receiver| -> Vec<String> {
        rx.hits("/ops")
            .iter()
            .map(|h| h.json()["type"].as_str().unwrap().to_string())
            .collect()
    };
    wait_for(
        Duration::from_secs(30),
        "failing and dead_letter.created",
        || {
            let rx = rx.clone();
            async move {
                let t = types(&rx);
                (t.contains(&"endpoint.failing".into())
                    && t.contains(&"dead_letter.created".into()))
                .then_some(())
            }
        },
    )
    .await;
    // The next delivery succeeds: recovered.
    payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "endpoint.recovered", || {
        let rx = rx.clone();
        async move {
            types(&rx)
                .contains(&"endpoint.recovered".into())
                .then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    pipeline.stop().await.unwrap();
    let mut seen = types(&rx);
    seen.sort();
    assert_eq!(
        seen,
        [
            "dead_letter.created",
            "endpoint.failing",
            "endpoint.recovered"
        ],
        "one of each: failing once for four failures in a row"
    );
    let wh = standardwebhooks::Webhook::new(ops_secret.expose()).unwrap();
    for hit in rx.hits("/ops") {
        wh.verify(&hit.body, &hit.headers)
            .expect("operator events verify with operator.secret");
        let body = hit.json();
        assert_eq!(body["data"]["merchant_id"], json!(m.merchant.id));
        assert_eq!(body["data"]["endpoint_id"], json!(m.merchant.endpoint_id));
        if body["type"] == "dead_letter.created" {
            assert!(body["data"]["delivery_id"]
                .as_str()
                .unwrap()
                .starts_with("dlv_"));
            assert!(body["data"]["event_id"]
                .as_str()
                .unwrap()
                .starts_with("evt_"));
            assert!(body["data"]["dead_letter_id"]
                .as_str()
                .unwrap()
                .starts_with("dlq_"));
            assert_eq!(body["data"]["reason"], "exhausted");
        }
    }
    // The operator's hidden merchant is nowhere in the merchant list.
    let list = payhook::store::merchants::list(
        &env.store,
        &payhook::store::Page::new(None, None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(list.len(), 1);
}

/// A dead operator URL (it accepts connections and never answers) holds
/// its own attempts, not the merchants': their deliveries go out while the
/// operator's are still hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_operator_url_does_not_hold_up_merchant_deliveries() {
    use std::sync::atomic::Ordering;
    let (hole, open) = crate::support::black_hole().await;
    let rx = Receiver::start().await;
    let env = Env::with(move |c| {
        c.operator.webhook_url = Some(payhook::ids::Secret::new(format!("http://{hole}/ops")));
        c.operator.secret = Some(payhook::ids::new_secret());
        c.delivery.timeout = payhook::config::HumanDuration(Duration::from_secs(5));
    })
    .await;
    let now = payhook::time::now_ms();
    payhook::store::operator::sync(&env.store, &env.cfg.operator, now)
        .await
        .unwrap();
    let healthy = env.merchant(&rx.url("/shop")).await;
    // Operator events: twenty endpoints disabled by hand.
    for i in 0..20 {
        let m = env.merchant(&rx.url(&format!("/other-{i}"))).await;
        let ep = m.merchant.endpoint_id.unwrap();
        payhook::ops::endpoints::disable(&env.store, &ep)
            .await
            .unwrap();
    }
    let pipeline = env.start();
    wait_for(Duration::from_secs(10), "operator attempts hanging", || {
        let open = open.clone();
        async move { (open.load(Ordering::SeqCst) >= 1).then_some(()) }
    })
    .await;
    for _ in 0..30 {
        payhook::ops::merchants::send_test(&env.store, &healthy.merchant.id)
            .await
            .unwrap();
    }
    wait_for(
        Duration::from_secs(20),
        "the merchant's 30 deliveries",
        || {
            let rx = rx.clone();
            async move { (rx.hits("/shop").len() == 30).then_some(()) }
        },
    )
    .await;
    assert!(
        open.load(Ordering::SeqCst) >= 1,
        "the operator's attempts were still hanging meanwhile"
    );
    let waiting = env
        .count("SELECT COUNT(*) FROM deliveries WHERE merchant_id = 'mer_operator' AND status = 'pending'")
        .await;
    assert_eq!(waiting, 20, "operator events wait, none lost");
    pipeline.stop().await.unwrap();
}
