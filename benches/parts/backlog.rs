//! A large backlog drained by the sender alone: deliveries/s, payhook's
//! CPU per delivery, how many cores were busy, and resident memory while
//! draining. The same at 1,000,000 deliveries is the soak
//! (PAYHOOK_BENCH_SOAK=1): the drain rate of the last 100,000 against the
//! first 100,000, and RSS over time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use payhook::config::Config;
use payhook::ids::MerchantId;
use payhook::ops::merchants::{self, NewMerchant};
use payhook::store::Store;

use crate::cpu::{self, CpuClock, CpuUse};

#[derive(Debug, serde::Serialize)]
pub struct Backlog {
    pub deliveries: usize,
    pub per_sec: f64,
    pub cpu: CpuUse,
    pub payhook_cpu_ms_per_delivery: f64,
    pub database_cpu_ms_per_delivery: f64,
    pub rss_before_mib: f64,
    pub peak_rss_mib: f64,
    /// Every 10 % of the backlog: (delivered, seconds since start, RSS MiB).
    pub marks: Vec<(u64, f64, f64)>,
}

impl Backlog {
    /// Deliveries/s over the first and the last tenth of the backlog.
    pub fn first_and_last_tenth(&self) -> (f64, f64) {
        let tenth = (self.deliveries / 10) as f64;
        let at = |i: usize| self.marks.get(i).map(|m| m.1).unwrap_or(f64::NAN);
        let first = tenth / at(0);
        let last = tenth / (at(9) - at(8));
        (first, last)
    }
}

/// `n` webhook.test events for a merchant, `chunk` per transaction.
pub async fn emit_tests(store: &Store, merchant_id: &MerchantId, n: usize) {
    const CHUNK: usize = 20_000;
    let mut left = n;
    while left > 0 {
        let take = left.min(CHUNK);
        let mut tx = store.begin_write().await.unwrap();
        let targets = payhook::store::endpoints::targets_in(&mut tx, merchant_id)
            .await
            .unwrap();
        for _ in 0..take {
            let now = payhook::time::now_ms();
            payhook::store::events::emit_test(&mut tx, merchant_id, &targets.endpoints[0], now)
                .await
                .unwrap();
        }
        store.commit(tx, true).await.unwrap();
        left -= take;
    }
}

/// Queues `n` deliveries to one merchant while no worker runs, then drains
/// them with the sender alone.
pub async fn drain(
    store: &Store,
    cfg: &Config,
    url: &str,
    hits: &Arc<AtomicU64>,
    n: usize,
) -> Backlog {
    let m = merchants::create(
        store,
        cfg,
        NewMerchant {
            name: format!("backlog-{n}"),
            webhook_url: url.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    emit_tests(store, &m.merchant.id, n).await;
    let rss_before = cpu::rss_mib();
    let before = hits.load(Ordering::Relaxed);
    let done = Arc::new(AtomicBool::new(false));
    let marks = Arc::new(Mutex::new(Vec::new()));
    let peak = Arc::new(Mutex::new(rss_before));
    let start = Instant::now();
    let clock = CpuClock::start();
    let pipeline = crate::sender_only(store, cfg);
    // Samples RSS and the receiver's count every 50 ms.
    let sampler = {
        let (done, marks, peak, hits) = (done.clone(), marks.clone(), peak.clone(), hits.clone());
        tokio::spawn(async move {
            let step = (n / 10).max(1) as u64;
            let mut next_mark = step;
            while !done.load(Ordering::Relaxed) {
                let rss = cpu::rss_mib();
                {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(rss);
                }
                let seen = hits.load(Ordering::Relaxed) - before;
                while seen >= next_mark && next_mark <= n as u64 {
                    marks
                        .lock()
                        .unwrap()
                        .push((next_mark, start.elapsed().as_secs_f64(), rss));
                    next_mark += step;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    crate::wait_delivered(
        store,
        &pipeline,
        hits,
        before + n as u64,
        &m.merchant.id,
        n as i64,
    )
    .await;
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    let cpu = clock.read();
    // Let the sampler record the last mark.
    tokio::time::sleep(Duration::from_millis(120)).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    pipeline.stop().await.unwrap();
    let marks = marks.lock().unwrap().clone();
    let peak = *peak.lock().unwrap();
    Backlog {
        deliveries: n,
        per_sec,
        payhook_cpu_ms_per_delivery: cpu.payhook_ms_per(n),
        database_cpu_ms_per_delivery: cpu.database_ms_per(n),
        cpu,
        rss_before_mib: rss_before,
        peak_rss_mib: peak,
        marks,
    }
}
