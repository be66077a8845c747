//! The admin API over real HTTP: every route's happy path, auth, unknown
//! ids, bad bodies (including a fuzz loop of malformed JSON: never a 5xx),
//! metrics that move as deliveries happen.

use std::time::Duration;

use payhook::admin::{self, AppState};
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::support::{wait_for, Env, Receiver};

pub(crate) const TOKEN: &str = "test-admin-token-0123456789-abcdefghijkl";

pub(crate) struct Api {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
}

impl Api {
    pub(crate) async fn start(env: &Env) -> Api {
        let listener = admin::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState {
            store: env.store.clone(),
            cfg: std::sync::Arc::new(env.cfg.clone()),
        };
        let stop = CancellationToken::new();
        tokio::spawn(payhook::web::serve(
            listener,
            state,
            TOKEN.into(),
            stop.clone(),
        ));
        Api {
            base,
            client: reqwest::Client::new(),
            stop,
        }
    }

    pub(crate) async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        self.call_with(method, path, body.as_deref(), Some(TOKEN))
            .await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_end_to_end() {
    let env = Env::with(|c| c.retry.max_attempts = 1).await;
    let api = Api::start(&env).await;
    let rx = Receiver::start().await;
    rx.script("/fails", vec![500.into()]);
    // The scan below must be the one that confirms the payment.
    let pipeline = env.start_sender();

    assert_eq!(
        api.call_with(Method::GET, "/healthz", None, None).await.0,
        200
    );
    assert_eq!(api.get("/readyz").await.0, 200);

    // Merchants.
    let (st, m) = api
        .post(
            "/v1/merchants",
            json!({"name": "Shop", "webhook_url": rx.url("/hook")}),
        )
        .await;
    assert_eq!(st, 201, "{m}");
    let mid = m["id"].as_str().unwrap().to_string();
    assert!(m["secret"].as_str().unwrap().starts_with("whsec_"));
    let (st, _) = api.post("/v1/merchants", json!({"name": "Other", "webhook_url": rx.url("/fails"), "event_types": ["payment.confirmed"]})).await;
    assert_eq!(st, 201);
    let (st, page1) = api.get("/v1/merchants?limit=1").await;
    assert_eq!(st, 200);
    assert_eq!(page1["data"].as_array().unwrap().len(), 1);
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, page2) = api
        .get(&format!("/v1/merchants?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(page2["data"].as_array().unwrap().len(), 1);
    assert_ne!(page1["data"][0]["id"], page2["data"][0]["id"]);
    let (st, shown) = api.get(&format!("/v1/merchants/{mid}")).await;
    assert_eq!(st, 200);
    assert!(
        shown.get("secret").is_none(),
        "secret is shown only on create and rotate"
    );
    let (st, patched) = api
        .call(
            Method::PATCH,
            &format!("/v1/merchants/{mid}"),
            Some(json!({"name": "Shop 2", "rate_limit_per_sec": 50})),
        )
        .await;
    assert_eq!((st, patched["name"].as_str()), (200, Some("Shop 2")));
    assert_eq!(patched["rate_limit_per_sec"], 50);
    let (st, rotated) = api
        .post(
            &format!("/v1/merchants/{mid}/rotate-secret"),
            json!({"overlap": "1h"}),
        )
        .await;
    assert_eq!(st, 200, "{rotated}");
    assert!(rotated["previous_secret_expires_at"].is_string());
    let secret = rotated["secret"].as_str().unwrap().to_string();
    let (st, t) = api
        .post(&format!("/v1/merchants/{mid}/test"), json!({}))
        .await;
    assert_eq!(st, 202);
    let test_event = t["event_id"].as_str().unwrap().to_string();
    let (st, _) = api
        .post(&format!("/v1/merchants/{mid}/enable"), json!({}))
        .await;
    assert_eq!(st, 200);

    // Payments, chains, scans.
    let (st, p) = api
        .post("/v1/payments", json!({"merchant_id": mid, "reference": "ORD-1", "chain": "ethereum", "token": "USDT", "address": "0xabc", "expected_amount": "10.50"}))
        .await;
    assert_eq!(st, 201, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.post("/v1/chains/ethereum/head", json!({"height": 100}))
            .await
            .0,
        200
    );
    let (st, d) = api
        .post(
            &format!("/v1/payments/{pid}/detections"),
            json!({"tx_hash": "0xfeed", "amount": "10.50", "block_number": 100}),
        )
        .await;
    assert_eq!((st, d["status"].as_str()), (200, Some("detected")));
    assert_eq!(
        api.post("/v1/chains/ethereum/head", json!({"height": 111}))
            .await
            .0,
        200
    );
    let (st, chains) = api.get("/v1/chains").await;
    assert_eq!((st, chains["data"][0]["head"].as_i64()), (200, Some(111)));
    let (st, scan) = api.post("/v1/scans", json!({})).await;
    assert_eq!((st, scan["confirmed"].as_i64()), (200, Some(1)));
    let (st, shown) = api.get(&format!("/v1/payments/{pid}")).await;
    assert_eq!((st, shown["status"].as_str()), (200, Some("confirmed")));
    assert_eq!(shown["events"].as_array().unwrap().len(), 2);

    // Events: show and replay (same webhook-id delivered again).
    wait_for(Duration::from_secs(15), "three deliveries", || {
        let rx = rx.clone();
        async move { (rx.hits("/hook").len() >= 3).then_some(()) }
    })
    .await;
    let (st, ev) = api.get(&format!("/v1/events/{test_event}")).await;
    assert_eq!((st, ev["type"].as_str()), (200, Some("webhook.test")));
    assert_eq!(ev["payload"]["id"], test_event.as_str());
    let (st, rep) = api
        .post(&format!("/v1/events/{test_event}/replay"), json!({}))
        .await;
    assert_eq!(st, 202, "{rep}");
    wait_for(Duration::from_secs(15), "the replay", || {
        let rx = rx.clone();
        let id = test_event.clone();
        async move {
            (rx.hits("/hook")
                .iter()
                .filter(|h| h.header("webhook-id") == id)
                .count()
                == 2)
                .then_some(())
        }
    })
    .await;
    let replayed = rx
        .hits("/hook")
        .into_iter()
        .filter(|h| h.header("webhook-id") == test_event)
        .last()
        .unwrap();
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&replayed.body, &replayed.headers)
        .unwrap();

    // Deliveries (an outcome is written just after the receiver answers).
    let path = format!("/v1/deliveries?status=succeeded&merchant_id={mid}");
    let list = wait_for(Duration::from_secs(15), "4 succeeded deliveries", || {
        let (api, path) = (&api, &path);
        async move {
            let (st, list) = api.get(path).await;
            assert_eq!(st, 200);
            (list["data"].as_array().unwrap().len() >= 4).then_some(list)
        }
    })
    .await;
    let did = list["data"][0]["id"].as_str().unwrap().to_string();
    let (st, one) = api.get(&format!("/v1/deliveries/{did}")).await;
    assert_eq!(st, 200);
    assert_eq!(one["delivery_attempts"][0]["status_code"], 200);
    list_filters_narrow_deliveries(&api, &mid, &pid, &shown).await;

    // Dead letters: the failing merchant's confirmed event... make one.
    let (_, other) = api.get("/v1/merchants?limit=10").await;
    let failing = other["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Other")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        api.post(&format!("/v1/merchants/{failing}/test"), json!({}))
            .await;
    }
    wait_for(Duration::from_secs(15), "two dead letters", || async {
        (env.count("SELECT COUNT(*) FROM dead_letters").await == 2).then_some(())
    })
    .await;
    rx.script("/fails", vec![200.into()]);
    let (st, dl) = api
        .get(&format!(
            "/v1/dead-letters?merchant_id={failing}&reason=exhausted"
        ))
        .await;
    assert_eq!(st, 200);
    let rows = dl["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let dlq_id = rows[0]["id"].as_str().unwrap().to_string();
    let (st, r) = api
        .post(&format!("/v1/dead-letters/{dlq_id}/resubmit"), json!({}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert!(r["resubmitted_delivery_id"].is_string());
    let (st, again) = api
        .post(&format!("/v1/dead-letters/{dlq_id}/resubmit"), json!({}))
        .await;
    assert_eq!((st, error_code(&again)), (409, "conflict"));
    let (st, bulk) = api
        .post("/v1/dead-letters/resubmit", json!({"merchant_id": failing}))
        .await;
    assert_eq!((st, bulk["count"].as_i64()), (200, Some(1)));
    wait_for(Duration::from_secs(15), "resubmitted deliveries", || {
        let rx = rx.clone();
        async move { (rx.hits("/fails").len() >= 4).then_some(()) }
    })
    .await;
    let since = api
        .get("/v1/dead-letters?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(since.1["data"].as_array().unwrap().len(), 2);

    // Metrics moved.
    let (st, _) = api.get("/metrics").await;
    assert_eq!(st, 200);
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("payhook_attempts_total{outcome=\"succeeded\",status_class=\"2xx\"}"),
        "{text}"
    );
    assert!(text.contains("payhook_attempts_total{outcome=\"dead\",status_class=\"5xx\"}"));
    assert!(text.contains("payhook_delivery_latency_seconds_bucket"));
    assert!(
        text.contains("payhook_dead_letters 0"),
        "both dead letters were resubmitted"
    );
    pipeline.stop().await.unwrap();
}

#[tokio::test]
async fn auth_is_required_everywhere_but_healthz() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    // The documented route table: each route exists (401, not 404) behind auth.
    let routes: Vec<(Method, String)> = payhook::admin::openapi::ROUTES
        .iter()
        .filter(|r| r.1 != "/healthz")
        .map(|(m, p, ..)| {
            let path = p.replace("{id}", "x_1").replace("{chain}", "ethereum");
            (m.to_uppercase().parse().unwrap(), path)
        })
        .collect();
    assert!(routes.len() >= 23);
    for (m, path) in &routes {
        let path = path.as_str();
        let (st, body) = api.call_with(m.clone(), path, Some("{}"), None).await;
        assert_eq!((st, error_code(&body)), (401, "unauthorized"), "{m} {path}");
        let (st, _) = api
            .call_with(m.clone(), path, Some("{}"), Some("wrong-token-wrong-token"))
            .await;
        assert_eq!(st, 401, "{m} {path}");
    }
    assert_eq!(
        api.call_with(Method::GET, "/healthz", None, None).await.0,
        200
    );
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    for (m, path, body) in [
        (Method::GET, "/v1/merchants/mer_nope", None),
        (
            Method::PATCH,
            "/v1/merchants/mer_nope",
            Some(json!({"name": "x"})),
        ),
        (
            Method::POST,
            "/v1/merchants/mer_nope/rotate-secret",
            Some(json!({})),
        ),
        (Method::POST, "/v1/merchants/mer_nope/test", Some(json!({}))),
        (
            Method::POST,
            "/v1/merchants/mer_nope/enable",
            Some(json!({})),
        ),
        (Method::GET, "/v1/payments/pay_nope", None),
        (
            Method::POST,
            "/v1/payments/pay_nope/detections",
            Some(json!({"tx_hash": "0x1", "amount": "1", "block_number": 1})),
        ),
        (Method::GET, "/v1/events/evt_nope", None),
        (Method::POST, "/v1/events/evt_nope/replay", Some(json!({}))),
        (Method::GET, "/v1/deliveries/dlv_nope", None),
        (Method::GET, "/v1/endpoints/ep_nope", None),
        (Method::DELETE, "/v1/endpoints/ep_nope", None),
        (Method::GET, "/v1/endpoints/ep_nope/secret", None),
        (Method::GET, "/v1/endpoints/ep_nope/health", None),
        (
            Method::POST,
            "/v1/endpoints/ep_nope/enable",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/merchants/mer_nope/endpoints",
            Some(json!({"url": "https://example.com/x"})),
        ),
        (Method::GET, "/v1/endpoints/ep_operator", None),
        (Method::GET, "/v1/merchants/mer_operator", None),
        (
            Method::POST,
            "/v1/dead-letters/dlq_nope/resubmit",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/payments",
            Some(
                json!({"merchant_id": "mer_nope", "reference": "r", "chain": "ethereum", "address": "a", "expected_amount": "1"}),
            ),
        ),
    ] {
        let (st, b) = api.call(m.clone(), path, body).await;
        assert_eq!((st, error_code(&b)), (404, "not_found"), "{m} {path}: {b}");
    }
}

#[tokio::test]
async fn bad_bodies_name_the_field_and_never_500() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    let (_, m) = api
        .post(
            "/v1/merchants",
            json!({"name": "S", "webhook_url": "http://127.0.0.1:9/x"}),
        )
        .await;
    let mid = m["id"].as_str().unwrap().to_string();
    let cases = [
        (
            "/v1/merchants",
            json!({"name": "S", "webhook_url": "ftp://x"}),
            422,
            "webhook_url",
        ),
        ("/v1/merchants", json!({"name": "S"}), 422, "webhook_url"),
        (
            "/v1/merchants",
            json!({"name": "S", "webhook_url": "http://127.0.0.1:9/", "signature_scheme": "md5"}),
            422,
            "signature_scheme",
        ),
        (
            "/v1/merchants",
            json!({"name": "S", "webhook_url": "http://127.0.0.1:9/", "bogus": 1}),
            422,
            "bogus",
        ),
        (
            "/v1/merchants",
            json!({"name": "S", "webhook_url": "http://127.0.0.1:9/", "rate_limit_per_sec": -3}),
            422,
            "rate_limit_per_sec",
        ),
        (
            "/v1/payments",
            json!({"merchant_id": mid, "reference": "r", "chain": "ethereum", "address": "a", "expected_amount": "1e9"}),
            422,
            "expected_amount",
        ),
        (
            "/v1/payments",
            json!({"merchant_id": mid, "reference": "r", "chain": "ethereum", "address": "a", "expected_amount": 10.5}),
            422,
            "expected_amount",
        ),
        (
            "/v1/payments",
            json!({"merchant_id": mid, "reference": "r", "chain": "doge", "address": "a", "expected_amount": "1"}),
            422,
            "chain",
        ),
        (
            "/v1/chains/ethereum/head",
            json!({"height": -1}),
            422,
            "height",
        ),
        (
            "/v1/chains/ethereum/head",
            json!({"height": "tall"}),
            422,
            "height",
        ),
        (
            "/v1/chains/ethereum/head",
            json!({"height": i64::MAX}),
            422,
            "height",
        ),
        (
            "/v1/chains/nochain/head",
            json!({"height": 5}),
            422,
            "chain",
        ),
        (
            "/v1/dead-letters/resubmit",
            json!({"reason": "bored"}),
            422,
            "reason",
        ),
        (
            "/v1/dead-letters/resubmit",
            json!({"since": "yesterday"}),
            422,
            "since",
        ),
    ];
    for (path, body, status, field) in cases {
        let (st, b) = api.post(path, body.clone()).await;
        assert_eq!(st, status, "{path} {body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap_or("").contains(field),
            "{path} {body}: {b}"
        );
    }
    let (st, b) = api
        .post(
            &format!("/v1/merchants/{mid}/rotate-secret"),
            json!({"overlap": "forever"}),
        )
        .await;
    assert_eq!(st, 422, "{b}");
    let (st, _) = api.get("/v1/deliveries?status=lost").await;
    assert_eq!(st, 422);
    let (st, _) = api.get("/v1/deliveries?limit=abc").await;
    assert_eq!(st, 400);

    // A fuzz loop: malformed JSON and random values on every POST route.
    let posts = [
        "/v1/merchants".to_string(),
        "/v1/payments".to_string(),
        format!("/v1/merchants/{mid}/rotate-secret"),
        format!("/v1/merchants/{mid}"),
        "/v1/chains/ethereum/head".to_string(),
        "/v1/dead-letters/resubmit".to_string(),
        "/v1/payments/pay_x/detections".to_string(),
    ];
    let samples = [
        "", "{", "}", "[]", "null", "true", "1e999", "\"x\"", "{\"name\":}", "{\"name\":null}", "{\"height\":1e400}",
        "{\"height\":18446744073709551616}", "{\"expected_amount\":\"99999999999999999999999999999999999999999999999999999999999999999999999999999999999\"}",
        "{\"webhook_url\":\"http://[::1\"}", "\u{0}\u{1}", "{\"a\":{\"b\":{\"c\":[[[[[[[]]]]]]]}}}",
    ];
    let mut rng = rand::rng();
    for i in 0..300 {
        let path = &posts[i % posts.len()];
        let body: String = if i < samples.len() * 3 {
            samples[i % samples.len()].to_string()
        } else {
            let len = rng.random_range(0..64);
            (0..len)
                .map(|_| rng.random_range(0x20u8..0x7f) as char)
                .collect()
        };
        let method = if path.starts_with("/v1/merchants/mer_") && !path.ends_with("rotate-secret") {
            Method::PATCH
        } else {
            Method::POST
        };
        let (st, b) = api.call_with(method, path, Some(&body), Some(TOKEN)).await;
        assert!(st < 500, "{path} with {body:?} gave {st}: {b}");
        if st >= 400 {
            assert!(b["error"]["code"].is_string(), "{path} {body:?}: {b}");
        }
    }
}

/// The admin listener against slow and greedy clients: incomplete headers
/// are cut off, oversized bodies refused with 413, and a crowd of idle
/// connections cannot starve `/healthz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_cuts_off_slow_headers_refuses_big_bodies_and_bounds_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new().await;
    let api = Api::start(&env).await;
    let addr = api.base.trim_start_matches("http://").to_string();

    // Headers that never finish: the connection is closed after ~10 s.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a connection with unfinished headers stayed open 20 s"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "closed after {took:?}, expected ~10 s"
    );

    // A body over 1 MiB: 413, named.
    let big = format!(
        "{{\"name\":\"{}\",\"webhook_url\":\"https://example.com/\"}}",
        "x".repeat(admin::MAX_BODY_BYTES)
    );
    let (st, b) = api
        .call_with(Method::POST, "/v1/merchants", Some(&big), Some(TOKEN))
        .await;
    assert_eq!(st, 413, "{b}");
    assert_eq!(b["error"]["code"], "payload_too_large");

    // More idle connections than the cap: /healthz still answers once the
    // oldest are cut off, and the process keeps its descriptors.
    let cap = admin::max_connections();
    let mut idle = Vec::new();
    for _ in 0..(cap + 20).min(1100) {
        if let Ok(c) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(c);
        }
    }
    let healthz = tokio::time::timeout(
        Duration::from_secs(20),
        api.client.get(format!("{}/healthz", api.base)).send(),
    )
    .await;
    assert!(
        matches!(healthz, Ok(Ok(ref r)) if r.status() == 200),
        "/healthz did not answer within 20 s beside {} idle connections (cap {cap})",
        idle.len()
    );
    drop(idle);
    api.stop.cancel();
}

/// `/readyz` asks the database for a write: one that refuses writes (a
/// full disk, a revoked privilege, a lock held too long) is not ready.
#[tokio::test]
async fn readyz_fails_while_the_database_refuses_writes() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    assert_eq!(api.get("/readyz").await.0, 200);
    if crate::support::on_postgres() {
        env.exec(
            "CREATE FUNCTION refuse_beat() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
        )
        .await;
        env.exec(
            "CREATE TRIGGER refuse_beat BEFORE INSERT OR UPDATE ON payhook_heartbeat \
             FOR EACH ROW EXECUTE FUNCTION refuse_beat()",
        )
        .await;
    } else {
        env.exec(
            "CREATE TRIGGER refuse_beat BEFORE UPDATE ON payhook_heartbeat \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
        .await;
    }
    let (st, body) = api.get("/readyz").await;
    assert_eq!(st, 503, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("does not take writes"));
    assert_eq!(api.get("/healthz").await.0, 200, "alive, only not ready");
    api.stop.cancel();
}

/// Every call that changes something leaves an audit row: who, what, which
/// object, when, and a summary with no secret in it.
#[tokio::test]
async fn changes_are_audited_without_secrets() {
    let env = Env::new().await;
    let api = Api::start(&env).await;
    let (st, m) = api
        .post(
            "/v1/merchants",
            json!({"name": "Audited", "webhook_url": "https://example.com/hook/TOKEN-in-path",
                   "headers": {"API-Key": "apikey-AUDIT-7b2"}}),
        )
        .await;
    assert_eq!(st, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let (_, rotated) = api
        .post(&format!("/v1/merchants/{id}/rotate-secret"), json!({}))
        .await;
    api.post(&format!("/v1/merchants/{id}/test"), json!({}))
        .await;
    api.post("/v1/chains/ethereum/head", json!({"height": 7}))
        .await;
    api.post("/v1/scans", json!({})).await;

    let (st, log) = api.get("/v1/audit").await;
    assert_eq!(st, 200, "{log}");
    let rows = log["data"].as_array().unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "scan.run",
            "chain.set_head",
            "merchant.test",
            "merchant.rotate_secret",
            "merchant.create"
        ]
    );
    assert!(rows
        .iter()
        .all(|r| r["actor"] == "admin" && r["at"].is_string()));
    assert_eq!(rows[4]["object_id"], json!(id));
    assert_eq!(rows[4]["summary"]["headers"], json!(["API-Key"]));
    let text = log.to_string();
    for secret in [
        m["secret"].as_str().unwrap(),
        rotated["secret"].as_str().unwrap(),
        "apikey-AUDIT-7b2",
        "TOKEN-in-path",
    ] {
        assert!(!text.contains(secret), "the audit log shows {secret:?}");
    }
    // Filters and pages.
    let (_, one) = api
        .get(&format!("/v1/audit?action=merchant.create&object_id={id}"))
        .await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    let (_, page) = api.get("/v1/audit?limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = api
        .get(&format!("/v1/audit?limit=10&cursor={cursor}"))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 3);
    let (st, _) = api.get("/v1/audit?since=yesterday").await;
    assert_eq!(st, 422);
    api.stop.cancel();
}

/// A merchant API key sees and acts on its own merchant only: another
/// merchant's objects are 404, admin-only routes 403, lists hold only its
/// own rows, its changes are audited under its id, and a revocation is
/// refused at once by another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_keys_see_their_own_merchant_only() {
    let env = Env::with(|c| {
        c.retry.max_attempts = 1;
        c.circuit.failure_threshold = 1000;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/a", vec![503.into()]);
    rx.script("/b", vec![503.into()]);
    let a = env.merchant(&rx.url("/a")).await.merchant.id;
    let b = env.merchant(&rx.url("/b")).await.merchant.id;
    env.set_head(100).await;
    let pay_a = env.detected_payment(&a, "PA", "1", "1", 99).await;
    let pay_b = env.detected_payment(&b, "PB", "1", "1", 99).await;
    let pipeline = env.start();
    wait_for(Duration::from_secs(20), "both dead letters", || async {
        (env.count("SELECT COUNT(*) FROM dead_letters").await == 2).then_some(())
    })
    .await;
    pipeline.stop().await.unwrap();
    let api = Api::start(&env).await;
    let (st, issued) = api
        .post(
            &format!("/v1/merchants/{a}/api-keys"),
            json!({"name": "shop backend"}),
        )
        .await;
    assert_eq!(st, 201, "{issued}");
    let key = issued["key"].as_str().unwrap().to_string();
    let key_id = issued["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("phk_"));
    let as_a = |m: Method, path: String| {
        let (api, key) = (&api, key.clone());
        async move { api.call_with(m, &path, Some("{}"), Some(&key)).await }
    };
    let b_rows = |table: &'static str| {
        let (env, b) = (&env, b.clone());
        async move {
            let sql: &'static str = Box::leak(
                format!("SELECT id FROM {table} WHERE merchant_id = '{b}'").into_boxed_str(),
            );
            payhook::store::query(payhook::store::Sql::both(sql))
                .scalars::<String>(env.store.db())
                .await
                .unwrap()
                .remove(0)
        }
    };
    let (event_b, delivery_b, dlq_b) = (
        b_rows("events").await,
        b_rows("deliveries").await,
        b_rows("dead_letters").await,
    );
    // Its own merchant and objects: visible.
    assert_eq!(as_a(Method::GET, format!("/v1/merchants/{a}")).await.0, 200);
    assert_eq!(
        as_a(Method::GET, format!("/v1/payments/{pay_a}")).await.0,
        200
    );
    // Another merchant's: not found, whatever the route.
    for (m, path) in [
        (Method::GET, format!("/v1/merchants/{b}")),
        (Method::PATCH, format!("/v1/merchants/{b}")),
        (Method::POST, format!("/v1/merchants/{b}/test")),
        (Method::GET, format!("/v1/merchants/{b}/api-keys")),
        (Method::GET, format!("/v1/payments/{pay_b}")),
        (Method::GET, format!("/v1/events/{event_b}")),
        (Method::POST, format!("/v1/events/{event_b}/replay")),
        (Method::GET, format!("/v1/deliveries/{delivery_b}")),
        (Method::POST, format!("/v1/dead-letters/{dlq_b}/resubmit")),
    ] {
        let (st, body) = as_a(m.clone(), path.clone()).await;
        assert_eq!(
            (st, error_code(&body)),
            (404, "not_found"),
            "{m} {path}: {body}"
        );
    }
    // Admin-only routes: forbidden.
    for (m, path) in [
        (Method::GET, "/v1/merchants".to_string()),
        (Method::POST, "/v1/merchants".to_string()),
        (Method::POST, "/v1/payments".to_string()),
        (Method::POST, format!("/v1/payments/{pay_a}/detections")),
        (Method::POST, "/v1/chains/ethereum/head".to_string()),
        (Method::GET, "/v1/chains".to_string()),
        (Method::POST, "/v1/scans".to_string()),
        (Method::GET, "/v1/audit".to_string()),
        (Method::GET, "/metrics".to_string()),
    ] {
        let (st, body) = as_a(m.clone(), path.clone()).await;
        assert_eq!(
            (st, error_code(&body)),
            (403, "forbidden"),
            "{m} {path}: {body}"
        );
    }
    // Lists hold only its own rows, even when it asks for another's.
    for path in [
        "/v1/deliveries".to_string(),
        "/v1/dead-letters".to_string(),
        format!("/v1/deliveries?merchant_id={b}"),
    ] {
        let (st, list) = as_a(Method::GET, path.clone()).await;
        assert_eq!(st, 200, "{path}");
        let rows = list["data"].as_array().unwrap();
        assert!(
            rows.iter().all(|r| r["merchant_id"] == json!(a)),
            "{path}: {list}"
        );
        assert!(path.contains("merchant_id") || !rows.is_empty(), "{path}");
    }
    // Bulk resubmission reaches its own dead letters only; audited as the key.
    let (st, done) = as_a(Method::POST, "/v1/dead-letters/resubmit".to_string()).await;
    assert_eq!((st, &done["count"]), (200, &json!(1)), "{done}");
    let (_, audit) = api
        .get("/v1/audit?action=dead_letter.resubmit_matching")
        .await;
    assert_eq!(audit["data"][0]["actor"], json!(key_id));

    // Revoked in one process, refused at once by another.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = env.cfg.clone();
    cfg.admin.listen = format!("127.0.0.1:{port}");
    let config = crate::support::write_config(env.dir.path(), &cfg);
    let config_text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, config_text).unwrap();
    let mut child = std::process::Command::new(crate::support::payhook_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let other = format!("http://127.0.0.1:{port}/v1/merchants/{a}");
    let client = reqwest::Client::new();
    let status = |client: reqwest::Client, url: String, key: String| async move {
        client
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(20), "the other process serving", || {
        let (c, u, k) = (client.clone(), other.clone(), key.clone());
        async move { (status(c, u, k).await == 200).then_some(()) }
    })
    .await;
    let (st, _) = api
        .call(Method::DELETE, &format!("/v1/api-keys/{key_id}"), None)
        .await;
    assert_eq!(st, 200);
    let revoked_at = std::time::Instant::now();
    wait_for(Duration::from_secs(1), "the revoked key refused", || {
        let (c, u, k) = (client.clone(), other.clone(), key.clone());
        async move { (status(c, u, k).await == 401).then_some(()) }
    })
    .await;
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    let (_, revokes) = api.get("/v1/audit?action=api_key.revoke").await;
    assert_eq!(revokes["data"][0]["object_id"], json!(key_id));
    let (_, log) = api.get("/v1/audit?limit=500").await;
    assert!(
        !log.to_string().contains(key.as_str()),
        "the audit log shows the key"
    );
    let _ = child.kill();
    let _ = child.wait();
    api.stop.cancel();
}

/// `GET /v1/deliveries` by event type, payment and time range: each filter
/// keeps exactly the rows it names.
async fn list_filters_narrow_deliveries(api: &Api, mid: &str, pid: &str, payment: &Value) {
    let ids = |list: &Value| -> std::collections::BTreeSet<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    let of_type = |t: &str| -> std::collections::BTreeSet<String> {
        payment["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| t.is_empty() || e["type"] == t)
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let base = format!("/v1/deliveries?merchant_id={mid}");
    let (st, confirmed) = api
        .get(&format!("{base}&event_type=payment.confirmed"))
        .await;
    assert_eq!(st, 200, "{confirmed}");
    assert_eq!(ids(&confirmed), of_type("payment.confirmed"));
    let (st, of_payment) = api.get(&format!("{base}&payment_id={pid}")).await;
    assert_eq!(st, 200, "{of_payment}");
    assert_eq!(ids(&of_payment), of_type(""));
    let (st, tests) = api.get(&format!("{base}&event_type=webhook.test")).await;
    assert_eq!(st, 200);
    assert!(!tests["data"].as_array().unwrap().is_empty());
    assert!(ids(&tests).is_disjoint(&of_type("")));
    let (_, all) = api.get(&base).await;
    let (_, since) = api.get(&format!("{base}&since=2000-01-01T00:00:00Z")).await;
    assert_eq!(ids(&since), ids(&all));
    assert!(!ids(&all).is_empty());
    let (_, future) = api.get(&format!("{base}&since=2999-01-01T00:00:00Z")).await;
    assert_eq!(future["data"].as_array().unwrap().len(), 0);
    let (_, past) = api.get(&format!("{base}&until=2000-01-01T00:00:00Z")).await;
    assert_eq!(past["data"].as_array().unwrap().len(), 0);
    let (st, bad) = api.get(&format!("{base}&event_type=payment.lost")).await;
    assert_eq!(st, 422, "{bad}");
    let msg = bad["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("event_type") && msg.contains("payment.confirmed"),
        "{msg}"
    );
    let (st, bad) = api.get(&format!("{base}&since=yesterday")).await;
    assert_eq!(st, 422, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("since"));
}
