//! `make bench`: N payments → confirmed → signed delivery to a local
//! keep-alive receiver, compared with the raw reqwest POST rate to the same
//! receiver (the ceiling). Prints figures; asserts nothing about speed.
//!
//! PAYHOOK_BENCH_N (default 5000) sets N; PAYHOOK_BENCH_ENDPOINTS (default 1)
//! gives the merchant that many endpoints, so each confirmation fans out to
//! that many deliveries (rates are then deliveries, not payments, per
//! second). Without `--bench` (as under
//! `cargo test --all-targets`) it runs with N = 200 as a smoke test.
//! With PAYHOOK_TEST_POSTGRES set (`make bench` runs it a second time under
//! scripts/with-postgres.sh, fsync on) it runs on a fresh Postgres database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use payhook::config::{ChainConfig, Config, HumanDuration};
use payhook::ids::MerchantId;
use payhook::ops::merchants::{self, NewMerchant};
use payhook::ops::payments::{self, Detection, NewPayment};
use payhook::pipeline::{Parts, Pipeline};
use payhook::store::Store;

#[path = "parts/backlog.rs"]
mod backlog;
#[path = "parts/cpu.rs"]
mod cpu;
#[path = "parts/durable.rs"]
mod durable;
#[path = "../tests/it/pg_database.rs"]
mod pg_database;
#[path = "parts/steady.rs"]
mod steady;

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and
    // then this runs as a small smoke test of the bench itself.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("PAYHOOK_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 200 } else { 5000 });
    // A failed assertion must end the bench: unwinding out of `block_on`
    // would wait forever for the queue workers' blocking threads.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
    if std::env::var("RUST_LOG").is_ok() {
        payhook::logging::init(payhook::config::LogFormat::Pretty, "info");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
    rt.shutdown_timeout(Duration::from_secs(2));
}

/// The receiver runs on a runtime of its own, on threads named `bench-rx`,
/// so its CPU can be told apart from payhook's (`parts/cpu.rs`).
async fn start_receiver() -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-rx".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("bench-rx")
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = Router::new().route(
                    "/hook",
                    post(move || {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                            "ok"
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        })
        .unwrap();
    let addr = rx.await.unwrap();
    (format!("http://{addr}/hook"), hits)
}

/// Raw reqwest POSTs with the same concurrency and a body of the same size.
async fn ceiling(url: &str, n: usize, concurrency: usize) -> f64 {
    let client = reqwest::Client::new();
    let body = "x".repeat(450);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, next) =
            (client.clone(), url.to_string(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                let r = client.post(&url).body(body.clone()).send().await.unwrap();
                let _ = r.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn bench_config(db: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}?mode=rwc", db.display());
    cfg.secrets.key = Some(payhook::ids::Secret::new(
        payhook::sealing::KeyRing::generate_key(),
    ));
    cfg.delivery.allow_http = true;
    cfg.delivery.allow_private_targets = true;
    cfg.delivery.rate_limit_per_sec = 1_000_000;
    cfg.delivery.rate_limit_burst = 100_000;
    // One receiver endpoint takes the whole load here, so the per-endpoint
    // in-flight cap is lifted to the worker concurrency (the isolation phase
    // puts the default cap back).
    cfg.delivery.max_in_flight_per_endpoint = cfg.delivery.concurrency;
    cfg.scanner.interval = HumanDuration(Duration::from_millis(100));
    cfg.scanner.batch_size = 500;
    if let Ok(c) = std::env::var("PAYHOOK_BENCH_CONCURRENCY") {
        cfg.delivery.concurrency = c.parse().unwrap();
    }
    cfg.chains.insert(
        "ethereum".into(),
        ChainConfig {
            confirmations: 12,
            rpc_url: None,
            tokens: Default::default(),
        },
    );
    cfg
}

/// Creates and detects `n` payments, 16 at a time (as a gateway calling the
/// API from several request handlers would).
async fn seed(
    store: &Store,
    cfg: &Config,
    merchant_id: &MerchantId,
    n: usize,
    block: i64,
    tag: &str,
) {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| async move {
            let p = payments::create(
                store,
                cfg,
                NewPayment {
                    merchant_id: merchant_id.clone(),
                    reference: format!("{tag}-{i}"),
                    chain: "ethereum".into(),
                    token: Some("USDT".into()),
                    address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
                    expected_amount: "100.00".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            payments::detect(
                store,
                cfg,
                &p.id,
                Detection {
                    tx_hash: format!("0x{tag}{i}"),
                    amount: "100.00".into(),
                    block_number: block,
                },
            )
            .await
            .unwrap();
        })
        .await;
}

/// Waits until `target` deliveries have succeeded (committed, not just
/// answered). The receiver's counter is watched first: counting rows every
/// few milliseconds would itself cost the database a core on a large table,
/// so the database is asked only once the receiver has seen enough requests.
async fn wait_delivered(
    store: &Store,
    pipeline: &Pipeline,
    hits: &AtomicU64,
    hits_target: u64,
    merchant_id: &MerchantId,
    target: i64,
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let succeeded = || async {
        payhook::store::query(payhook::store::Sql::both(
            "SELECT COUNT(*) FROM deliveries WHERE merchant_id = $1 AND status = 'succeeded'",
        ))
        .bind(merchant_id)
        .scalar::<i64>(store.db())
        .await
        .unwrap()
    };
    loop {
        if hits.load(Ordering::Relaxed) >= hits_target && succeeded().await >= target {
            return;
        }
        assert!(
            Instant::now() < deadline && pipeline.sender_running(),
            "bench stalled: {} of {target} delivered, sender running: {}",
            succeeded().await,
            pipeline.sender_running()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The sender alone (no scanner), on `store`.
pub fn sender_only(store: &Store, cfg: &Config) -> Pipeline {
    Pipeline::start(
        store,
        cfg,
        Parts {
            scanner: false,
            sender: true,
        },
    )
    .unwrap()
}

/// A TCP endpoint that accepts connections and never answers.
async fn black_hole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    (addr, task)
}

/// Queues `n` test events to a healthy merchant (and, with `hole`, as many
/// to a black-holed one), starts the sender and returns healthy deliveries/s.
async fn healthy_drain(
    store: &Store,
    cfg: &Config,
    url: &str,
    hits: &AtomicU64,
    n: usize,
    hole: Option<&str>,
    dark_for: Duration,
) -> f64 {
    let healthy = merchants::create(
        store,
        cfg,
        NewMerchant {
            name: "healthy".into(),
            webhook_url: url.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stuck = match hole {
        Some(h) => Some(
            merchants::create(
                store,
                cfg,
                NewMerchant {
                    name: "hole".into(),
                    webhook_url: h.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        ),
        None => None,
    };
    // The black hole's backlog arrives first. With `dark_for` (3 s: the
    // steady state) the sender runs meanwhile and the healthy events arrive
    // after it; with zero (its first seconds) both backlogs are queued when
    // the sender starts, the black hole's oldest: a sender that restarts
    // with a dead endpoint's jobs overdue, or an endpoint that went dark with
    // a backlog, and the timing starts with the sender.
    let before = hits.load(Ordering::Relaxed);
    let (pipeline, t) = if dark_for.is_zero() {
        if let Some(s) = &stuck {
            backlog::emit_tests(store, &s.merchant.id, n).await;
        }
        backlog::emit_tests(store, &healthy.merchant.id, n).await;
        (sender_only(store, cfg), Instant::now())
    } else {
        let pipeline = sender_only(store, cfg);
        if let Some(s) = &stuck {
            backlog::emit_tests(store, &s.merchant.id, n).await;
        }
        tokio::time::sleep(dark_for).await;
        backlog::emit_tests(store, &healthy.merchant.id, n).await;
        (pipeline, Instant::now())
    };
    wait_delivered(
        store,
        &pipeline,
        hits,
        before + n as u64,
        &healthy.merchant.id,
        n as i64,
    )
    .await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    pipeline.stop().await.unwrap();
    // The black hole's deliveries are still pending: an operator would
    // delete the dead endpoint (they go to the DLQ). Left queued, they come
    // due in later phases, whose cap is lifted to the worker concurrency, and
    // every worker's request hangs there for a request timeout.
    if let Some(s) = &stuck {
        let ep = payhook::store::endpoints::primary(store, &s.merchant.id)
            .await
            .unwrap();
        payhook::ops::endpoints::delete(store, &ep).await.unwrap();
    }
    rate
}

/// Whether a phase runs: every phase but the soak, unless PAYHOOK_BENCH_ONLY
/// names some (comma-separated: durable, e2e, drain, isolation, backlog,
/// steady, ingest, tables, soak). PAYHOOK_BENCH_SOAK=1 adds the soak.
fn wants(phase: &str) -> bool {
    match std::env::var("PAYHOOK_BENCH_ONLY") {
        Ok(list) => list.split(',').any(|p| p.trim() == phase),
        Err(_) => phase != "soak" || std::env::var("PAYHOOK_BENCH_SOAK").is_ok_and(|v| v == "1"),
    }
}

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bench_config(&dir.path().join("bench.db"));
    let backend = match pg_database::fresh("bench").await {
        Some(url) => {
            cfg.database.url = url;
            "Postgres (fsync on)"
        }
        None => "SQLite",
    };
    let concurrency = cfg.delivery.concurrency as usize;
    let (url, hits) = start_receiver().await;
    let mut summary = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        summary.insert(k.to_string(), v);
    };
    println!("payhook bench — {backend}, N = {n}, delivery.concurrency = {concurrency}, 2 cores");

    // Warm the receiver, then measure the ceiling.
    ceiling(&url, 500, concurrency).await;
    let raw = ceiling(&url, n, concurrency).await;
    println!("  raw reqwest POST ceiling      {raw:>9.0} req/s (no signing, nothing written)");
    put("n", n.into());
    put("raw_ceiling_per_sec", raw.into());

    let store = payhook::store::Store::open(&cfg).await.unwrap();
    payments::set_head(&store, &cfg, "ethereum", 1000)
        .await
        .unwrap();

    // 0) The durable ceiling: signed POSTs, outcomes committed in batches,
    //    no queue.
    let mut durable = f64::NAN;
    if wants("durable") {
        let m = merchants::create(
            &store,
            &cfg,
            NewMerchant {
                name: "durable".into(),
                webhook_url: url.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        backlog::emit_tests(&store, &m.merchant.id, n).await;
        let clock = cpu::CpuClock::start();
        let (rate, done) = durable::ceiling(&store, &cfg, &m.merchant.id, &url).await;
        let used = clock.read();
        assert_eq!(done, n);
        durable = rate;
        println!(
            "  durable ceiling               {durable:>9.0} deliveries/s (signed, outcomes committed in batches, no queue); {:.3} ms payhook CPU per delivery, {:.2} cores busy",
            used.payhook_ms_per(n),
            used.cores_busy
        );
        put(
            "durable_ceiling",
            serde_json::json!({"per_sec": durable, "cpu": used,
                "payhook_cpu_ms_per_delivery": used.payhook_ms_per(n)}),
        );
    }

    let m = merchants::create(
        &store,
        &cfg,
        NewMerchant {
            name: "bench".into(),
            webhook_url: url.clone(),
            // Only confirmations are delivered, so N payments = N deliveries.
            event_types: Some(vec!["payment.confirmed".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fan = env_n("PAYHOOK_BENCH_ENDPOINTS", 1).max(1);
    for i in 1..fan {
        let extra = payhook::ops::endpoints::NewEndpoint {
            url: format!("{url}?endpoint={i}"),
            event_types: Some(vec!["payment.confirmed".into()]),
            ..Default::default()
        };
        payhook::ops::endpoints::create(&store, &cfg, &m.merchant.id, extra)
            .await
            .unwrap();
    }
    put("endpoints_per_merchant", fan.into());
    let deliveries = n * fan;
    let ratio = |rate: f64| {
        if durable.is_nan() {
            String::new()
        } else {
            format!("   {:.2} of the durable ceiling", rate / durable)
        }
    };
    let mut delivered_so_far = 0i64;

    // 1) End to end: pipeline running, N detected payments become due at once.
    if wants("e2e") {
        let t = Instant::now();
        seed(&store, &cfg, &m.merchant.id, n, 1000, "a").await;
        let seed_rate = n as f64 / t.elapsed().as_secs_f64();
        let pipeline = Pipeline::start(
            &store,
            &cfg,
            Parts {
                scanner: true,
                sender: true,
            },
        )
        .unwrap();
        let before = hits.load(Ordering::Relaxed);
        let t = Instant::now();
        payments::set_head(&store, &cfg, "ethereum", 1011)
            .await
            .unwrap();
        delivered_so_far += deliveries as i64;
        wait_delivered(
            &store,
            &pipeline,
            &hits,
            before + deliveries as u64,
            &m.merchant.id,
            delivered_so_far,
        )
        .await;
        let e2e = deliveries as f64 / t.elapsed().as_secs_f64();
        let sent = hits.load(Ordering::Relaxed) - before;
        pipeline.stop().await.unwrap();
        println!(
            "  end to end (confirm→deliver)  {e2e:>9.0} deliveries/s{}",
            ratio(e2e)
        );
        println!(
            "  requests seen by receiver     {sent:>9} in the end-to-end run (at-least-once: ≥ {deliveries})"
        );
        println!("  seeding (create + detect)     {seed_rate:>9.0} payments/s (16 concurrent callers, direct calls)");
        put("end_to_end_per_sec", e2e.into());
        put("seeding_payments_per_sec", seed_rate.into());
    }

    // 2) Backlog drain: N confirmed deliveries queued while no worker runs.
    if wants("drain") {
        seed(&store, &cfg, &m.merchant.id, n, 2000, "b").await;
        payments::set_head(&store, &cfg, "ethereum", 2011)
            .await
            .unwrap();
        let t = Instant::now();
        let report = payhook::scanner::scan_once(&store, &cfg).await.unwrap();
        let scan_rate = report.total() as f64 / t.elapsed().as_secs_f64();
        let clock = cpu::CpuClock::start();
        let pipeline = sender_only(&store, &cfg);
        let before = hits.load(Ordering::Relaxed);
        let t = Instant::now();
        delivered_so_far += deliveries as i64;
        wait_delivered(
            &store,
            &pipeline,
            &hits,
            before + deliveries as u64,
            &m.merchant.id,
            delivered_so_far,
        )
        .await;
        let drain = deliveries as f64 / t.elapsed().as_secs_f64();
        let used = clock.read();
        pipeline.stop().await.unwrap();
        println!(
            "  backlog drain                 {drain:>9.0} deliveries/s{}",
            ratio(drain)
        );
        println!(
            "    CPU per delivery            {:>9.3} ms payhook{}; {:.2} of 2 cores busy",
            used.payhook_ms_per(deliveries),
            if cfg.is_postgres() {
                format!(" + {:.3} ms Postgres", used.database_ms_per(deliveries))
            } else {
                String::new()
            },
            used.cores_busy
        );
        println!("  scanner confirmations         {scan_rate:>9.0} payments/s (event + delivery + job per payment)");
        put("drain_per_sec", drain.into());
        put(
            "drain_cpu",
            serde_json::json!({"use": used,
                "payhook_cpu_ms_per_delivery": used.payhook_ms_per(deliveries),
                "database_cpu_ms_per_delivery": used.database_ms_per(deliveries)}),
        );
        put("scanner_confirmations_per_sec", scan_rate.into());
    }

    // 3) Isolation: the same drain of healthy deliveries, alone and next to
    //    a black-holed endpoint (accepts TCP, never answers).
    let mut capped = cfg.clone();
    capped.delivery.max_in_flight_per_endpoint =
        Config::default().delivery.max_in_flight_per_endpoint;
    if wants("isolation") {
        let (hole, _) = black_hole().await;
        let dark = Duration::from_secs(3);
        let alone = healthy_drain(&store, &capped, &url, &hits, n, None, dark).await;
        let hole = Some(format!("http://{hole}/hook"));
        let beside = healthy_drain(&store, &capped, &url, &hits, n, hole.as_deref(), dark).await;
        // A second black hole, its events and the healthy ones at once.
        let (fresh, _) = black_hole().await;
        let fresh = Some(format!("http://{fresh}/hook"));
        let zero = Duration::ZERO;
        let just_dark =
            healthy_drain(&store, &capped, &url, &hits, n, fresh.as_deref(), zero).await;
        println!(
            "  isolation (in-flight cap {})   {alone:>9.0} healthy/s alone, {beside:.0} beside a black hole   ratio {:.2} (goal ≥ 0.9)",
            capped.delivery.max_in_flight_per_endpoint,
            beside / alone
        );
        println!(
            "    in its first seconds        {just_dark:>9.0} healthy/s beside a black hole that just went dark   ratio {:.2}",
            just_dark / alone
        );
        put(
            "isolation",
            serde_json::json!({"alone_per_sec": alone, "beside_black_hole_per_sec": beside,
                               "ratio": beside / alone, "just_dark_per_sec": just_dark,
                               "just_dark_ratio": just_dark / alone}),
        );
    }

    // 4) A large backlog (PAYHOOK_BENCH_BACKLOG, default 100,000): rate,
    //    CPU and memory while draining it.
    if wants("backlog") {
        let size = env_n(
            "PAYHOOK_BENCH_BACKLOG",
            if smoke_run() { 1000 } else { 100_000 },
        );
        let b = backlog::drain(&store, &cfg, &url, &hits, size).await;
        println!(
            "  backlog of {size:<7}            {:>9.0} deliveries/s{}; {:.3} ms payhook CPU per delivery{}, {:.2} cores busy; RSS {:.0} → peak {:.0} MiB",
            b.per_sec,
            ratio(b.per_sec),
            b.payhook_cpu_ms_per_delivery,
            if cfg.is_postgres() {
                format!(" + {:.3} ms Postgres", b.database_cpu_ms_per_delivery)
            } else {
                String::new()
            },
            b.cpu.cores_busy,
            b.rss_before_mib,
            b.peak_rss_mib
        );
        put("backlog", serde_json::to_value(&b).unwrap());
    }
    println!(
        "  peak RSS                      {:>9.1} MiB",
        cpu::peak_rss_mib()
    );
    put("peak_rss_mib", cpu::peak_rss_mib().into());

    // 5) Steady load over the API (PAYHOOK_BENCH_STEADY_SECS, default 60).
    if wants("steady") {
        let (rates, secs) = if smoke_run() {
            (vec![50], 2)
        } else {
            (
                vec![500, 2000],
                env_n("PAYHOOK_BENCH_STEADY_SECS", 60) as u64,
            )
        };
        let mut felt = Vec::new();
        for rate in rates {
            // With the default per-endpoint in-flight cap, as deployed.
            let s = steady::run(&store, &capped, rate, secs).await;
            println!(
                "  steady {rate:>5}/s for {secs} s    {} payments detected, {} events missing at the end",
                s.detected, s.missing
            );
            println!(
                "    event commit → receiver     {}",
                s.commit_to_receiver.line()
            );
            println!(
                "    detection call → receiver   {}",
                s.detection_to_receiver.line()
            );
            println!("    API call (create, detect)   {}", s.api.line());
            felt.push(s);
        }
        put("steady", serde_json::to_value(&felt).unwrap());
    }

    // 6) Ingest: create + detect over HTTP, 64 keep-alive callers
    //    (PAYHOOK_BENCH_INGEST_CALLERS).
    if wants("ingest") {
        let ingest_n = if smoke_run() { 200 } else { n };
        let callers = env_n("PAYHOOK_BENCH_INGEST_CALLERS", 64);
        let (rate, api) = steady::ingest(&store, &capped, callers, ingest_n).await;
        println!(
            "  ingest, {callers:>3} API callers        {rate:>9.0} payments/s (create + detect); API {}",
            api.line()
        );
        put(
            "ingest",
            serde_json::json!({"callers": callers, "payments_per_sec": rate, "api": api}),
        );
    }

    // 7) The soak (PAYHOOK_BENCH_SOAK=1; PAYHOOK_BENCH_SOAK_N, default 1,000,000).
    if wants("soak") {
        let size = env_n("PAYHOOK_BENCH_SOAK_N", 1_000_000);
        let b = backlog::drain(&store, &cfg, &url, &hits, size).await;
        let (first, last) = b.first_and_last_tenth();
        println!(
            "  soak of {size} deliveries     {:>9.0} deliveries/s; first tenth {first:.0}/s, last tenth {last:.0}/s ({:.2}, goal ≥ 0.9); peak RSS {:.0} MiB (goal ≤ 150)",
            b.per_sec,
            last / first,
            b.peak_rss_mib
        );
        for (done, secs, rss) in &b.marks {
            println!("    {done:>8} delivered at {secs:>6.1} s, RSS {rss:.0} MiB");
        }
        put(
            "soak",
            serde_json::json!({"drain": b, "first_tenth_per_sec": first,
                               "last_tenth_per_sec": last, "ratio": last / first}),
        );
    }
    write_summary(
        if backend == "SQLite" {
            "sqlite"
        } else {
            "postgres"
        },
        serde_json::Value::Object(summary),
    );
    if wants("tables") {
        let rows = if smoke_run() { 20_000 } else { 1_000_000 };
        big_table(&store, &cfg, &m.merchant.id, rows).await;
    }
    store.close().await;
}

/// Writes this backend's figures into `target/bench/summary.json` (the other
/// backend's, from its own run, are kept, and so are this backend's figures
/// of phases this run left out).
fn write_summary(backend: &str, figures: serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("summary.json");
    let mut all: serde_json::Map<String, serde_json::Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    // A run of some phases (PAYHOOK_BENCH_ONLY) updates only their figures.
    let mut mine = match all.remove(backend) {
        Some(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    if let serde_json::Value::Object(new) = figures {
        mine.extend(new);
    }
    all.insert(backend.to_string(), serde_json::Value::Object(mine));
    all.insert(
        "written_at".into(),
        payhook::time::rfc3339(payhook::time::now_ms()).into(),
    );
    std::fs::write(&path, serde_json::to_vec_pretty(&all).unwrap()).unwrap();
    println!("  figures written to {}", path.display());
}

fn smoke_run() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// 4) At a large table: `rows` finished deliveries (a tenth of them past
///    `retention.succeeded`), then a `/metrics` render and a retention pass,
///    each timed. Both should cost what is open or deleted, not the size
///    of the table.
async fn big_table(store: &Store, cfg: &Config, merchant: &MerchantId, rows: i64) {
    use payhook::store::{query, Sql};
    const FILL: Sql = Sql::each(
        "WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n + 1 < $1) \
         INSERT INTO deliveries (id, event_id, merchant_id, url, endpoint, status, attempts, \
         created_at, updated_at, completed_at) \
         SELECT $2 || printf('%016d', n), $3, $4, 'http://x/', 'http://x:80/', 'succeeded', 1, \
         $5, $5, $5 FROM c",
        "INSERT INTO deliveries (id, event_id, merchant_id, url, endpoint, status, attempts, \
         created_at, updated_at, completed_at) \
         SELECT $2 || lpad(n::text, 16, '0'), $3, $4, 'http://x/', 'http://x:80/', 'succeeded', 1, \
         $5, $5, $5 FROM generate_series(0, $1 - 1) AS n",
    );
    let (event, _) = merchants::send_test(store, merchant).await.unwrap();
    let now = payhook::time::now_ms();
    let old = now - 40 * 86_400_000;
    let old_rows = rows / 10;
    let t = Instant::now();
    for (count, at) in [(old_rows, old), (rows - old_rows, now - 1000)] {
        // The ids' time part is the rows' creation time, as payhook's are.
        let ulid = ulid::Ulid::from_parts(at as u64, 0).to_string();
        let prefix = format!("dlv_{}", &ulid[..10]);
        query(FILL)
            .bind(count)
            .bind(prefix)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .bind(at)
            .execute(store.write_db())
            .await
            .unwrap();
    }
    // A tenth of the recent rows got their attempt in the last hour.
    const ATTEMPTS: Sql = Sql::both(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code) \
         SELECT id, 1, created_at - 500, 12, 200 FROM deliveries WHERE created_at = $1 LIMIT $2",
    );
    query(ATTEMPTS)
        .bind(now - 1000)
        .bind(rows / 10)
        .execute(store.write_db())
        .await
        .unwrap();
    query(Sql::both(
        "INSERT INTO attempt_stats (minute, merchant_id, succeeded, failed) VALUES ($1, $2, $3, 0) \
         ON CONFLICT (minute, merchant_id) DO UPDATE SET \
         succeeded = attempt_stats.succeeded + excluded.succeeded",
    ))
    .bind((now - 1500) / 60_000 * 60_000)
    .bind(merchant.as_str())
    .bind(rows / 10)
    .execute(store.write_db())
    .await
    .unwrap();
    let fill = t.elapsed().as_secs_f64();
    console_pages(store, cfg, merchant, rows).await;
    let t = Instant::now();
    let text = payhook::metrics::render(store).await.unwrap();
    let scrape_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(text.contains("payhook_deliveries{status=\"pending\"}"));
    let t = Instant::now();
    let deleted = payhook::delivery::housekeeping::apply_retention(store, &cfg.retention)
        .await
        .unwrap();
    let pass = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = payhook::delivery::housekeeping::apply_retention(store, &cfg.retention)
        .await
        .unwrap();
    let idle_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "  at {rows} delivery rows:  /metrics {scrape_ms:.1} ms; retention pass {pass:.2} s \
         ({deleted} old rows, {:.0} rows/s), then {idle_ms:.1} ms with nothing due ({again} rows); \
         table filled in {fill:.1} s",
        deleted as f64 / pass
    );
}

/// 5) The console at a large table: each page's median time over 5 loads
///    through a real listener, signed in as admin.
async fn console_pages(store: &Store, cfg: &Config, merchant: &MerchantId, rows: i64) {
    let token = "bench-admin-token-0123456789-abcdefghijkl";
    let (base, stop) = steady::start_api(store, cfg, token).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Sign in as a browser would: the form's token, then the session cookie.
    let form = client
        .get(format!("{base}/console/login"))
        .send()
        .await
        .unwrap();
    let login_cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = login_cookie.split_once('=').unwrap().1.to_string();
    let signed = client
        .post(format!("{base}/console/login"))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    let session = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("payhook_session="))
        .expect("signed in");
    let one: String = payhook::store::query(payhook::store::Sql::both(
        "SELECT id FROM deliveries ORDER BY id DESC LIMIT 1",
    ))
    .scalar(store.db())
    .await
    .unwrap();
    let pages = [
        "/console/overview".to_string(),
        "/console/deliveries".to_string(),
        "/console/deliveries?status=succeeded".to_string(),
        format!("/console/deliveries?merchant_id={merchant}&event_type=webhook.test"),
        format!("/console/deliveries/{one}"),
        "/console/dlq".to_string(),
        format!("/console/merchants/{merchant}"),
        "/console/payments".to_string(),
        "/console/audit".to_string(),
    ];
    let mut line = String::new();
    for path in &pages {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.bytes().await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        line += &format!("\n      {path:<62} {:>7.1} ms", times[2]);
    }
    stop.cancel();
    println!("  console pages at {rows} delivery rows (median of 5):{line}");
}
