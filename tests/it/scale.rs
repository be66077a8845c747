//! Postgres scale-out: several `payhook worker` and `payhook scanner`
//! processes on one database, a worker killed with SIGKILL, rate limits
//! shared across processes, and the database server stopped mid-run. These
//! run in the Postgres pass of `make test` (they return at once on SQLite,
//! which is one process per database file). The outage test stops the
//! server, so `make test` runs it alone, on a server of its own.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use payhook::ops::merchants::NewMerchant;

use crate::support::{on_postgres, payhook_bin, wait_for, write_config, Env, Receiver};

/// A receiver that notices two requests for one event at the same time.
#[derive(Clone, Default)]
struct Watch {
    state: Arc<Mutex<WatchState>>,
}

#[derive(Default)]
struct WatchState {
    active: HashSet<String>,
    delivered: HashMap<String, Instant>,
    overlaps: Vec<String>,
    requests: usize,
}

impl Watch {
    async fn start(delay: Duration) -> (Watch, String) {
        let w = Watch::default();
        let state = w.state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let state = state.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                {
                    let mut s = state.lock().unwrap();
                    s.requests += 1;
                    if !s.active.insert(id.clone()) {
                        s.overlaps.push(id.clone());
                    }
                }
                // Leaves `active` even when the sender goes away mid-request
                // (a killed worker): the handler is dropped then.
                struct Leave(Arc<Mutex<WatchState>>, String);
                impl Drop for Leave {
                    fn drop(&mut self) {
                        self.0.lock().unwrap().active.remove(&self.1);
                    }
                }
                let _leave = Leave(state.clone(), id.clone());
                tokio::time::sleep(delay).await;
                state
                    .lock()
                    .unwrap()
                    .delivered
                    .entry(id)
                    .or_insert_with(Instant::now);
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (w, format!("http://{addr}/hook"))
    }

    fn delivered(&self) -> usize {
        self.state.lock().unwrap().delivered.len()
    }
}

struct Procs(Vec<Child>);

impl Procs {
    fn spawn(&mut self, env: &Env, role: &str, log: &str) {
        let config = env.dir.path().join("config.toml");
        let child = Command::new(payhook_bin())
            .arg("--config")
            .arg(&config)
            .arg(role)
            // PAYHOOK_TEST_CHILD_LOG (e.g. `debug`) to look closer.
            .env(
                "RUST_LOG",
                std::env::var("PAYHOOK_TEST_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.dir.path().join(log)).unwrap())
            .spawn()
            .unwrap();
        self.0.push(child);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn detected_payments(
    env: &Env,
    merchant_id: &payhook::ids::MerchantId,
    n: usize,
    block: i64,
) {
    for i in 0..n {
        env.detected_payment(merchant_id, &format!("S{i}"), "1", "1", block)
            .await;
    }
}

async fn events_total(env: &Env) -> usize {
    env.count("SELECT COUNT(*) FROM events").await as usize
}

async fn confirmed_once_each(env: &Env, payments: usize) {
    let per_payment: Vec<(String, i64)> = payhook::store::query(payhook::store::Sql::both(
        "SELECT p.id, COUNT(e.id) FROM payments p LEFT JOIN events e \
             ON e.payment_id = p.id AND e.type = 'payment.confirmed' GROUP BY p.id",
    ))
    .fetch_all(env.store.db())
    .await
    .unwrap();
    assert_eq!(per_payment.len(), payments);
    for (id, confirmed) in per_payment {
        assert_eq!(confirmed, 1, "payment {id} confirmed {confirmed} times");
    }
}

#[tokio::test]
async fn three_workers_and_two_scanners_share_one_database() {
    if !on_postgres() {
        return;
    }
    const PAYMENTS: usize = 1500;
    let env = Env::with(|c| c.delivery.concurrency = 32).await;
    let (watch, url) = Watch::start(Duration::from_millis(20)).await;
    let m = env.merchant(&url).await;
    detected_payments(&env, &m.merchant.id, PAYMENTS, 1).await;
    write_config(env.dir.path(), &env.cfg);
    let mut procs = Procs(Vec::new());
    for i in 0..3 {
        procs.spawn(&env, "worker", &format!("worker{i}.log"));
    }
    for i in 0..2 {
        procs.spawn(&env, "scanner", &format!("scanner{i}.log"));
    }
    // Every payment becomes due at once: both scanners race for them.
    env.set_head(100).await;
    wait_for(Duration::from_secs(60), "a third of the deliveries", || {
        let watch = watch.clone();
        async move { (watch.delivered() >= PAYMENTS * 2 / 3).then_some(()) }
    })
    .await;
    // Kill -9 one worker mid-run; its locked jobs must be taken over.
    let killed_at = Instant::now();
    procs.0[0].kill().unwrap();
    procs.0[0].wait().unwrap();
    let total = PAYMENTS * 2; // detected + confirmed
                              // Delivered and recorded: a job the killed worker sent but could not
                              // record is sent again after the takeover (at least once).
    wait_for(
        Duration::from_secs(90),
        "every event delivered and recorded",
        || {
            let (watch, env) = (watch.clone(), &env);
            async move {
                let all = events_total(env).await == total
                    && watch.delivered() == total
                    && env
                        .count("SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'")
                        .await
                        == 0;
                all.then_some(())
            }
        },
    )
    .await;
    let recovered = killed_at.elapsed();
    let (requests, overlaps) = {
        let s = watch.state.lock().unwrap();
        (s.requests, s.overlaps.clone())
    };
    println!(
        "scale-out: {total} events delivered by 3 workers ({requests} requests); all done {:.1} s after the kill -9",
        recovered.as_secs_f64()
    );
    assert!(
        overlaps.is_empty(),
        "same event sent twice at once: {:?}",
        &overlaps[..overlaps.len().min(5)]
    );
    // Orphaned jobs come back after orphan_after = max(10 s, 2 × delivery.timeout).
    assert!(
        recovered < Duration::from_secs(30),
        "recovery took {recovered:?}"
    );
    confirmed_once_each(&env, PAYMENTS).await;
    assert_eq!(
        env.count("SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_rate_limit_holds_across_worker_processes() {
    if !on_postgres() {
        return;
    }
    const RATE: i64 = 10;
    const EVENTS: usize = 60;
    let env = Env::with(|c| c.delivery.rate_limit_burst = 3).await;
    let rx = Receiver::start().await;
    let m = env
        .merchant_with(NewMerchant {
            name: "Limited".into(),
            webhook_url: rx.url("/limited"),
            rate_limit_per_sec: Some(RATE),
            ..Default::default()
        })
        .await;
    write_config(env.dir.path(), &env.cfg);
    let mut procs = Procs(Vec::new());
    for i in 0..3 {
        procs.spawn(&env, "worker", &format!("worker{i}.log"));
    }
    // The workers see each other (heartbeats and the share check run every 2 s).
    wait_for(
        Duration::from_secs(20),
        "three live worker processes",
        || {
            let env = &env;
            async move {
                let n = payhook::store::jobs::live_processes(env.store.queue_db())
                    .await
                    .unwrap();
                (n == 3).then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..EVENTS {
        payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
            .await
            .unwrap();
    }
    wait_for(Duration::from_secs(60), "every event delivered", || {
        let rx = rx.clone();
        async move { (rx.hits("/limited").len() >= EVENTS).then_some(()) }
    })
    .await;
    let hits = rx.hits("/limited");
    let span = hits.last().unwrap().at - hits[0].at;
    let rate = (hits.len() - 1) as f64 / span.as_secs_f64();
    println!(
        "rate limit {RATE}/s shared by 3 workers: {} deliveries in {:.2} s = {rate:.2}/s",
        hits.len(),
        span.as_secs_f64()
    );
    // Each process admits RATE/3 per second after a burst of 1, so together
    // at most 3 + RATE·t requests in t seconds: ≤ 10.6/s over 60 requests.
    // 25 % over the limit leaves room for timer jitter, not for a share bug
    // (three unshared limiters would measure about 3×).
    assert!(
        rate <= RATE as f64 * 1.25,
        "aggregate {rate:.2}/s over {RATE}/s"
    );
    // And the shares are used, not starved.
    assert!(rate >= RATE as f64 * 0.2, "aggregate {rate:.2}/s");
}

#[tokio::test]
async fn a_database_outage_is_survived_without_loss_or_double_confirmation() {
    if !on_postgres() {
        return;
    }
    const PAYMENTS: usize = 300;
    let env = Env::new().await;
    let (watch, url) = Watch::start(Duration::from_millis(5)).await;
    let m = env.merchant(&url).await;
    detected_payments(&env, &m.merchant.id, PAYMENTS, 1).await;
    write_config(env.dir.path(), &env.cfg);
    let mut procs = Procs(Vec::new());
    procs.spawn(&env, "worker", "worker.log");
    procs.spawn(&env, "scanner", "scanner.log");
    wait_for(Duration::from_secs(30), "some deliveries", || {
        let watch = watch.clone();
        async move { (watch.delivered() >= 50).then_some(()) }
    })
    .await;
    // The database goes away for about 10 seconds.
    let stop = std::env::var("PAYHOOK_TEST_PG_STOP").unwrap();
    let start = std::env::var("PAYHOOK_TEST_PG_START").unwrap();
    assert!(Command::new("sh")
        .arg("-c")
        .arg(&stop)
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(Command::new("sh")
        .arg("-c")
        .arg(&start)
        .status()
        .unwrap()
        .success());
    let back_at = Instant::now();
    // Back: the head moves and everything flows again, by itself.
    let store = payhook::store::Store::open(&env.cfg).await.unwrap();
    payhook::ops::payments::set_head(&store, &env.cfg, "ethereum", 100)
        .await
        .unwrap();
    let total = PAYMENTS * 2;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let events: i64 =
            payhook::store::query(payhook::store::Sql::both("SELECT COUNT(*) FROM events"))
                .scalar(store.db())
                .await
                .unwrap_or(0);
        if events as usize == total && watch.delivered() == total {
            break;
        }
        if Instant::now() >= deadline {
            let report = outage_report(&store, &watch, env.dir.path()).await;
            panic!(
                "timed out after 90 s waiting for every event delivered after the outage \
                 (database back {:.1} s ago)\n{report}",
                back_at.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let env = Env { store, ..env };
    confirmed_once_each(&env, PAYMENTS).await;
    drop(procs);
    // The logs tell of the outage, but not once per retry.
    for log in ["worker.log", "scanner.log"] {
        let text = std::fs::read_to_string(env.dir.path().join(log)).unwrap();
        let complaints = text
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .count();
        assert!(complaints >= 1, "{log} says nothing of the outage:\n{text}");
        // apalis' own lines for each worker that loses its connection, plus
        // one line per outage from each of payhook's parts (the outcome
        // writer's included): a handful, never one per retry.
        assert!(
            complaints <= 16,
            "{log}: {complaints} warnings in 10 s:\n{text}"
        );
    }
}

/// What a stuck outage test saw: the counts on each side and the tails of
/// the child processes' logs (they live in a temp dir that is gone after).
async fn outage_report(
    store: &payhook::store::Store,
    watch: &Watch,
    dir: &std::path::Path,
) -> String {
    use payhook::store::{query, Sql};
    let db = store.db();
    let mut out = String::new();
    let events: Result<i64, _> = query(Sql::both("SELECT COUNT(*) FROM events"))
        .scalar(db)
        .await;
    let (requests, delivered) = {
        let s = watch.state.lock().unwrap();
        (s.requests, s.delivered.len())
    };
    out += &format!(
        "events in db: {events:?}; receiver: {delivered} delivered, {requests} requests\n"
    );
    let by_status: Result<Vec<(String, i64)>, _> = query(Sql::both(
        "SELECT status, COUNT(*) FROM deliveries GROUP BY status ORDER BY status",
    ))
    .fetch_all(db)
    .await;
    out += &format!("deliveries by status: {by_status:?}\n");
    let jobs: Result<Vec<(String, String, i64)>, _> = query(Sql::both(
        "SELECT job_type, status, COUNT(*) FROM apalis.jobs GROUP BY job_type, status \
         ORDER BY job_type, status",
    ))
    .fetch_all(db)
    .await;
    out += &format!("apalis jobs by lane and status: {jobs:?}\n");
    let sample: Result<Vec<String>, _> = query(Sql::both(
        "SELECT concat_ws(' ', id, job_type, status, attempts, 'lock_by', lock_by, \
         'run_at', run_at, 'lock_at', lock_at) FROM apalis.jobs ORDER BY run_at LIMIT 5",
    ))
    .scalars(db)
    .await;
    out += &format!("oldest jobs: {sample:#?}\n");
    let workers: Result<Vec<(String, String, String)>, _> = query(Sql::both(
        "SELECT id, worker_type, CAST(last_seen AS TEXT) FROM apalis.workers ORDER BY last_seen",
    ))
    .fetch_all(db)
    .await;
    out += &format!(
        "apalis workers: {workers:#?}\nnow: {:?}\n",
        query(Sql::both("SELECT CAST(now() AS TEXT)"))
            .scalar::<String>(db)
            .await
    );
    for log in ["worker.log", "scanner.log"] {
        let text = strip_ansi(&std::fs::read_to_string(dir.join(log)).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        out += &format!(
            "--- {log}: last {} of {} lines\n{}\n",
            tail.len(),
            lines.len(),
            tail.join("\n")
        );
    }
    out
}

/// The logs' colour codes, removed so a panic message reads cleanly.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters… final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
