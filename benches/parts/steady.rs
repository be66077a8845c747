//! Steady load, what a merchant feels: payments created and detected over
//! the admin API at a fixed offered rate while the head rises every second,
//! the scanner and sender running. Measured: event commit → receiver (every
//! event), detection call → `payment.detected` at the receiver, and the
//! API's own latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use payhook::config::Config;
use payhook::store::Store;
use serde_json::json;

/// Percentiles of a set of latencies (ms).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub count: usize,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Spread {
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| {
            v.get(((v.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Spread {
            p50: at(0.5),
            p99: at(0.99),
            max: v.last().copied().unwrap_or(f64::NAN),
            count: v.len(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>8.1} ms  (n = {})",
            self.p50, self.p99, self.max, self.count
        )
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Steady {
    pub offered_per_sec: u32,
    pub secs: u64,
    /// Payments whose detection call succeeded.
    pub detected: usize,
    /// Event commit → receiver, every event received.
    pub commit_to_receiver: Spread,
    /// Detection call → its `payment.detected` at the receiver.
    pub detection_to_receiver: Spread,
    /// Each API call (create, detect).
    pub api: Spread,
    /// `payment.detected` events still missing when the wait ended.
    pub missing: usize,
}

#[derive(Default)]
struct Seen {
    /// (arrival ms, event created_at ms, type, reference)
    hits: Vec<(i64, i64, String, String)>,
}

async fn receiver(seen: Arc<Mutex<Seen>>) -> String {
    let app = Router::new().route(
        "/steady",
        post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let now = payhook::time::now_ms();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    let created = v["created_at"]
                        .as_str()
                        .and_then(|t| payhook::time::parse_rfc3339("created_at", t).ok())
                        .unwrap_or(now);
                    let kind = v["type"].as_str().unwrap_or_default().to_string();
                    let reference = v["data"]["reference"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    seen.lock()
                        .unwrap()
                        .hits
                        .push((now, created, kind, reference));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/steady")
}

/// Offers `rate` payments a second for `secs` seconds; returns what was felt.
pub async fn run(store: &Store, cfg: &Config, rate: u32, secs: u64) -> Steady {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = receiver(seen.clone()).await;
    let merchant = payhook::ops::merchants::create(
        store,
        cfg,
        payhook::ops::merchants::NewMerchant {
            name: format!("steady {rate}/s"),
            webhook_url: url,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .merchant
    .id;
    let token = "steady-admin-token-0123456789-abcdefghijkl";
    let (base, stop) = start_api(store, cfg, token).await;
    let pipeline = payhook::pipeline::Pipeline::start(
        store,
        cfg,
        payhook::pipeline::Parts {
            scanner: true,
            sender: true,
        },
    )
    .unwrap();
    // The head rises every second.
    let head = Arc::new(std::sync::atomic::AtomicI64::new(1_000_000));
    let (h, s, c, halt) = (head.clone(), store.clone(), cfg.clone(), stop.clone());
    tokio::spawn(async move {
        while !halt.is_cancelled() {
            let next = h.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let _ = payhook::ops::payments::set_head(&s, &c, "ethereum", next).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let client = reqwest::Client::new();
    let sent: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let api: Arc<Mutex<Vec<f64>>> = Arc::default();
    let total = rate as u64 * secs;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(t0 + period * i as u32).await;
        let (client, base, merchant) = (client.clone(), base.clone(), merchant.clone());
        let (sent, api, head) = (sent.clone(), api.clone(), head.clone());
        tasks.push(tokio::spawn(async move {
            let reference = format!("S{rate}-{i}");
            let call = |path: String, body: serde_json::Value| {
                let (client, api) = (client.clone(), api.clone());
                async move {
                    let (status, v) = api_post(&client, path, token, body, &api).await?;
                    (200..300).contains(&status).then_some(v)
                }
            };
            let created = call(
                format!("{base}/v1/payments"),
                json!({"merchant_id": merchant, "reference": reference, "chain": "ethereum",
                       "token": "USDT", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                       "expected_amount": "1.00"}),
            )
            .await?;
            let id = created["id"].as_str()?.to_string();
            let block = head.load(std::sync::atomic::Ordering::Relaxed);
            let at = payhook::time::now_ms();
            call(
                format!("{base}/v1/payments/{id}/detections"),
                json!({"tx_hash": format!("0x{reference}"), "amount": "1.00", "block_number": block}),
            )
            .await?;
            sent.lock().unwrap().insert(reference, at);
            Some(())
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Every detection's event, or up to a minute more.
    let deadline = Instant::now() + Duration::from_secs(60);
    let detected = sent.lock().unwrap().len();
    let missing = loop {
        let got = seen
            .lock()
            .unwrap()
            .hits
            .iter()
            .filter(|h| h.2 == "payment.detected")
            .count();
        if got >= detected || Instant::now() > deadline {
            break detected.saturating_sub(got);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.cancel();
    pipeline.stop().await.unwrap();
    let hits = std::mem::take(&mut seen.lock().unwrap().hits);
    let sent = sent.lock().unwrap().clone();
    let commit: Vec<f64> = hits.iter().map(|h| (h.0 - h.1) as f64).collect();
    let detection: Vec<f64> = hits
        .iter()
        .filter(|h| h.2 == "payment.detected")
        .filter_map(|h| sent.get(&h.3).map(|at| (h.0 - at) as f64))
        .collect();
    let api = std::mem::take(&mut *api.lock().unwrap());
    Steady {
        offered_per_sec: rate,
        secs,
        detected,
        commit_to_receiver: Spread::of(commit),
        detection_to_receiver: Spread::of(detection),
        api: Spread::of(api),
        missing,
    }
}

/// Ingest: `callers` keep-alive clients creating and detecting payments
/// over the API as fast as answers come, `total` in all (closed loop).
/// Returns payments per second and the API calls' spread.
pub async fn ingest(store: &Store, cfg: &Config, callers: usize, total: usize) -> (f64, Spread) {
    let merchant = payhook::ops::merchants::create(
        store,
        cfg,
        payhook::ops::merchants::NewMerchant {
            name: "ingest".into(),
            webhook_url: "http://127.0.0.1:9/ingest".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .merchant
    .id;
    let token = "ingest-admin-token-0123456789-abcdefghijkl";
    let (base, stop) = start_api(store, cfg, token).await;
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let api: Arc<Mutex<Vec<f64>>> = Arc::default();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (client, base, merchant) = (client.clone(), base.clone(), merchant.clone());
        let (next, api) = (next.clone(), api.clone());
        tasks.push(tokio::spawn(async move {
            let post = |path: String, body: serde_json::Value| {
                let (client, api) = (client.clone(), api.clone());
                async move {
                    let (status, v) = api_post(&client, path, token, body, &api)
                        .await
                        .expect("ingest call failed or answered no JSON");
                    assert!((200..300).contains(&status), "ingest call answered {status}");
                    v
                }
            };
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let reference = format!("I-{i}");
                let created = post(
                    format!("{base}/v1/payments"),
                    json!({"merchant_id": merchant, "reference": reference, "chain": "ethereum",
                           "token": "USDT", "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                           "expected_amount": "1.00"}),
                )
                .await;
                let id = created["id"].as_str().unwrap().to_string();
                post(
                    format!("{base}/v1/payments/{id}/detections"),
                    json!({"tx_hash": format!("0x{reference}"), "amount": "1.00", "block_number": 1}),
                )
                .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = total as f64 / t0.elapsed().as_secs_f64();
    stop.cancel();
    let api = std::mem::take(&mut *api.lock().unwrap());
    (rate, Spread::of(api))
}

/// POSTs `body` to the admin API and records the call's time (ms) in
/// `api`: the status and the JSON answer, `None` on a transport failure or
/// an answer that is not JSON.
async fn api_post(
    client: &reqwest::Client,
    path: String,
    token: &str,
    body: serde_json::Value,
    api: &Mutex<Vec<f64>>,
) -> Option<(u16, serde_json::Value)> {
    let t = Instant::now();
    let r = client
        .post(path)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    let v = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
    api.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
    Some((status, v))
}

/// The admin API and console on a loopback port, signed with `token`;
/// returns the base URL and the token that stops them.
pub async fn start_api(
    store: &Store,
    cfg: &Config,
    token: &str,
) -> (String, tokio_util::sync::CancellationToken) {
    let listener = payhook::admin::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = payhook::admin::AppState {
        store: store.clone(),
        cfg: Arc::new(cfg.clone()),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(payhook::web::serve(
        listener,
        state,
        token.into(),
        stop.clone(),
    ));
    (base, stop)
}
