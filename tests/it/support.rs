//! Shared helpers: a recording HTTP receiver, a test environment (SQLite
//! file in a temp dir + config), and polling with a deadline.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use payhook::config::{ChainConfig, Config, HumanDuration};
use payhook::ids::{MerchantId, PaymentId, Secret};
use payhook::ops::merchants::{self, NewMerchant, WithSecret};
use payhook::ops::payments::{self, Detection, NewPayment};
use payhook::pipeline::{Parts, Pipeline};
use payhook::store::Store;

#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Hit {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

/// A scripted answer: status plus optional headers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// The body (default "ok").
    pub body: Option<&'static str>,
}

impl From<u16> for Reply {
    fn from(status: u16) -> Self {
        Reply {
            status,
            headers: vec![],
            body: None,
        }
    }
}

#[derive(Default)]
struct RecvState {
    hits: Vec<Hit>,
    /// Per path: answers in order; the last one repeats. Default 200.
    script: HashMap<String, Vec<Reply>>,
    served: HashMap<String, usize>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<RecvState>>,
}

async fn record(
    State(state): State<Arc<Mutex<RecvState>>>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut s = state.lock().unwrap();
    s.hits.push(Hit {
        path: path.clone(),
        headers,
        body,
        at: Instant::now(),
    });
    let n = {
        let served = s.served.entry(path.clone()).or_insert(0);
        *served += 1;
        *served - 1
    };
    let reply = match s.script.get(&path) {
        Some(list) if !list.is_empty() => list[n.min(list.len() - 1)].clone(),
        _ => Reply::from(200),
    };
    let body = reply.body.unwrap_or("ok");
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut()
            .insert(k, HeaderValue::from_str(&v).unwrap());
    }
    resp
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(RecvState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(record).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers for `path` from now on, in order; the last repeats.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        let mut s = self.state.lock().unwrap();
        s.script.insert(path.to_string(), replies);
        s.served.insert(path.to_string(), 0);
    }

    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.state
            .lock()
            .unwrap()
            .hits
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    pub fn all_hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub cfg: Config,
    pub store: Store,
}

/// Test settings: loopback targets allowed, fast retries, one chain.
/// The tests' `secrets.key` (base64 of 32 bytes).
pub const TEST_SECRETS_KEY: &str = "dGVzdHMtb25seS1rZXktMDEyMzQ1Njc4OWFiY2RlZmc=";

pub fn test_config(db: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}?mode=rwc", db.display());
    cfg.delivery.allow_http = true;
    cfg.delivery.allow_private_targets = true;
    cfg.delivery.rate_limit_per_sec = 10_000;
    cfg.delivery.rate_limit_burst = 1_000;
    cfg.delivery.timeout = HumanDuration(Duration::from_secs(2));
    cfg.delivery.connect_timeout = HumanDuration(Duration::from_secs(1));
    cfg.retry.base = HumanDuration(Duration::from_secs(1));
    cfg.retry.max_attempts = 3;
    cfg.retry.jitter = 0.0;
    cfg.scanner.interval = HumanDuration(Duration::from_millis(200));
    cfg.chains.insert(
        "ethereum".into(),
        ChainConfig {
            confirmations: 12,
            rpc_url: None,
            tokens: Default::default(),
        },
    );
    cfg.admin.token = Some(Secret::new("test-admin-token-0123456789-abcdefghijkl"));
    cfg.secrets.key = Some(Secret::new(TEST_SECRETS_KEY));
    cfg
}

impl Env {
    pub async fn new() -> Env {
        Env::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(&dir.path().join("payhook.db"));
        if let Some(url) = fresh_postgres_database().await {
            cfg.database.url = url;
        }
        tweak(&mut cfg);
        cfg.validate().unwrap();
        let store = payhook::store::Store::open(&cfg).await.unwrap();
        Env { dir, cfg, store }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("payhook.db")
    }

    pub fn start(&self) -> Pipeline {
        Pipeline::start(
            &self.store,
            &self.cfg,
            Parts {
                scanner: true,
                sender: true,
            },
        )
        .unwrap()
    }

    /// The sender alone: no scanner loop confirms payments behind a test's
    /// back, so `POST /v1/scans` or `scanner::scan_once` is the only confirmer.
    pub fn start_sender(&self) -> Pipeline {
        Pipeline::start(
            &self.store,
            &self.cfg,
            Parts {
                scanner: false,
                sender: true,
            },
        )
        .unwrap()
    }

    pub async fn merchant(&self, url: &str) -> WithSecret {
        self.merchant_with(NewMerchant {
            name: "Test Shop".into(),
            webhook_url: url.into(),
            ..Default::default()
        })
        .await
    }

    pub async fn merchant_with(&self, input: NewMerchant) -> WithSecret {
        merchants::create(&self.store, &self.cfg, input)
            .await
            .unwrap()
    }

    pub async fn set_head(&self, height: i64) {
        payments::set_head(&self.store, &self.cfg, "ethereum", height)
            .await
            .unwrap();
    }

    /// A payment detected at `block` with `received` of `expected`.
    pub async fn detected_payment(
        &self,
        merchant_id: &MerchantId,
        reference: &str,
        expected: &str,
        received: &str,
        block: i64,
    ) -> PaymentId {
        let p = payments::create(
            &self.store,
            &self.cfg,
            NewPayment {
                merchant_id: merchant_id.clone(),
                reference: reference.into(),
                chain: "ethereum".into(),
                token: Some("USDT".into()),
                address: "0xabc".into(),
                expected_amount: expected.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        payments::detect(
            &self.store,
            &self.cfg,
            &p.id,
            Detection {
                tx_hash: format!("0x{reference}"),
                amount: received.into(),
                block_number: block,
            },
        )
        .await
        .unwrap();
        p.id
    }

    pub async fn delivery_statuses(&self) -> Vec<(String, String, i64)> {
        payhook::store::query(payhook::store::Sql::both(
            "SELECT id, status, attempts FROM deliveries ORDER BY id",
        ))
        .fetch_all(self.store.db())
        .await
        .unwrap()
    }

    /// Runs a statement written for both backends.
    pub async fn exec(&self, sql: &'static str) {
        payhook::store::query(payhook::store::Sql::both(sql))
            .execute(self.store.write_db())
            .await
            .map(|_| ())
            .unwrap()
    }

    /// Runs a statement built at run time (test set-up only).
    pub async fn exec_string(&self, sql: String) {
        let sql: &'static str = Box::leak(sql.into_boxed_str());
        self.exec(sql).await
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        payhook::store::query(payhook::store::Sql::both(sql))
            .scalar(self.store.db())
            .await
            .unwrap()
    }
}

/// With `PAYHOOK_TEST_POSTGRES` set (by `scripts/with-postgres.sh`, which
/// `make test` runs for the second pass), every test gets a database of its
/// own on that server.
pub async fn fresh_postgres_database() -> Option<String> {
    crate::pg_database::fresh("t").await
}

/// Whether this run is the Postgres pass.
pub fn on_postgres() -> bool {
    std::env::var("PAYHOOK_TEST_POSTGRES").is_ok()
}

/// The payhook binary built for these tests.
pub fn payhook_bin() -> &'static str {
    env!("CARGO_BIN_EXE_payhook")
}

/// Writes a TOML config for a child process from `cfg`.
pub fn write_config(dir: &std::path::Path, cfg: &Config) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml_of(cfg)).unwrap();
    path
}

fn toml_of(cfg: &Config) -> String {
    let mut s = String::new();
    s += &format!(
        "[database]\nurl = {:?}\nmax_connections = {}\n",
        cfg.database.url, cfg.database.max_connections
    );
    s += &format!(
        "[scanner]\ninterval = \"{}ms\"\nbatch_size = {}\n",
        cfg.scanner.interval.0.as_millis(),
        cfg.scanner.batch_size
    );
    for (name, c) in &cfg.chains {
        s += &format!("[chains.{name}]\nconfirmations = {}\n", c.confirmations);
        if let Some(url) = &c.rpc_url {
            s += &format!("rpc_url = {:?}\n", url.expose());
        }
    }
    let d = &cfg.delivery;
    s += &format!(
        "[delivery]\nconcurrency = {}\ntimeout = \"{}ms\"\nconnect_timeout = \"{}ms\"\nrate_limit_per_sec = {}\nrate_limit_burst = {}\nallow_http = {}\nallow_private_targets = {}\n",
        d.concurrency,
        d.timeout.0.as_millis(),
        d.connect_timeout.0.as_millis(),
        d.rate_limit_per_sec,
        d.rate_limit_burst,
        d.allow_http,
        d.allow_private_targets
    );
    s += &format!(
        "[retry]\nmax_attempts = {}\nbase = \"{}ms\"\ncap = \"{}ms\"\njitter = {:?}\n",
        cfg.retry.max_attempts,
        cfg.retry.base.0.as_millis(),
        cfg.retry.cap.0.as_millis(),
        cfg.retry.jitter
    );
    // The default address would collide between tests: any free port,
    // unless a test chose one.
    let listen = match cfg.admin.listen.as_str() {
        "127.0.0.1:8080" => "127.0.0.1:0",
        chosen => chosen,
    };
    s += &format!(
        "[admin]\nlisten = {listen:?}\ntoken = {:?}\n",
        cfg.admin
            .token
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default()
    );
    if let Some(key) = &cfg.secrets.key {
        s += &format!("[secrets]\nkey = {:?}\n", key.expose());
    }
    s
}

/// A TCP server that accepts connections and never answers (a black hole).
/// Returns its address and a counter of currently open connections.
pub async fn black_hole() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                // Read until the client gives up; never write.
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

/// A TCP server that answers every request with `head` (status line and
/// headers) and `body`, then closes the connection.
pub async fn raw_server(head: &'static str, body: Vec<u8>, reset_after_head: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the request head and its body (Content-Length).
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let _ = sock.write_all(head.as_bytes()).await;
                if reset_after_head {
                    let _ = sock.write_all(&body[..body.len() / 2]).await;
                    // Close with half the promised body: the client sees the
                    // connection end mid-body.
                    return;
                }
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}
