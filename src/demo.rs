//! `payhook demo`: the whole pipeline against a built-in merchant receiver on
//! 127.0.0.1. Registers a merchant, feeds four payments through detection →
//! confirmation → signed delivery; one delivery fails, retries, lands in the
//! DLQ and is resubmitted once the receiver is "fixed".

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{ChainConfig, Config, HumanDuration};
use crate::delivery::{dlq, signer};
use crate::domain::DeliveryStatus;
use crate::error::{AppError, AppResult};
use crate::ids::MerchantId;
use crate::ops::merchants::{self, NewMerchant};
use crate::ops::payments::{self, Detection, NewPayment};
use crate::pipeline::{Parts, Pipeline};
use crate::store::{self, dead_letters, Page, Store};

#[derive(Default)]
struct Inbox {
    secret: String,
    broken: bool,
    received: Vec<Received>,
}

struct Received {
    path: String,
    event_id: String,
    kind: String,
    reference: String,
    verified: bool,
    answered: u16,
}

type Shared = Arc<Mutex<Inbox>>;

async fn receive(
    State(inbox): State<Shared>,
    path: axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut inbox = inbox.lock().unwrap_or_else(|p| p.into_inner());
    let verified = signer::verify_standard(
        &inbox.secret,
        &h("webhook-id"),
        &h("webhook-timestamp"),
        &h("webhook-signature"),
        &body,
        Some(300),
        chrono::Utc::now().timestamp(),
    )
    .is_ok();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let kind = v["type"].as_str().unwrap_or("?").to_string();
    let flaky = path.path() == "/flaky" && kind == "payment.confirmed" && inbox.broken;
    let answered = if !verified {
        StatusCode::UNAUTHORIZED
    } else if flaky {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    inbox.received.push(Received {
        path: path.path().to_string(),
        event_id: h("webhook-id"),
        kind,
        reference: v["data"]["reference"].as_str().unwrap_or("-").to_string(),
        verified,
        answered: answered.as_u16(),
    });
    answered
}

fn step(msg: &str) {
    println!("\n▸ {msg}");
}

/// The demo, step by step: set up, register a merchant, feed payments
/// through detection and confirmation, watch one delivery die, fix the
/// receiver and resubmit it, then show what the merchant received.
pub async fn run(mut cfg: Config) -> AppResult<()> {
    let confirmations = demo_config(&mut cfg);
    println!(
        "payhook demo — database {}",
        crate::urls::redact_url(&cfg.database.url)
    );
    let store = Store::open(&cfg).await?;
    let inbox: Shared = Arc::new(Mutex::new(Inbox {
        broken: true,
        ..Default::default()
    }));
    let (addr, server) = start_receiver(inbox.clone()).await?;
    step(&format!("merchant receiver listening on http://{addr}"));
    let parts = Parts {
        scanner: true,
        sender: true,
    };
    let pipeline = Pipeline::start(&store, &cfg, parts)?;
    let merchant_id = register_merchant(&store, &cfg, addr, &inbox).await?;
    let head = feed_payments(&store, &cfg, addr, &merchant_id).await?;
    step(&format!(
        "chain head advances to {} ({confirmations} confirmations)",
        head + confirmations - 1
    ));
    payments::set_head(&store, &cfg, "ethereum", head + confirmations - 1).await?;
    let bar = progress(8, "deliveries settled  {msg}");
    let settled = wait_for(&store, &merchant_id, &bar, |ok, dead| {
        ok + dead >= 8 && dead >= 1
    })
    .await?;
    bar.finish_with_message(format!("{} delivered, {} dead", settled.0, settled.1));
    resubmit_dead_letter(&store, &merchant_id, &inbox).await?;
    let bar = progress(9, "deliveries settled");
    wait_for(&store, &merchant_id, &bar, |ok, _| ok >= 8).await?;
    bar.finish();
    pipeline.stop().await?;
    server.abort();
    report(&store, &inbox).await
}

/// The demo talks to its own receiver on loopback over plain HTTP, and
/// retries fast so the dead-letter path shows within seconds. Returns the
/// confirmations the demo chain needs.
fn demo_config(cfg: &mut Config) -> i64 {
    cfg.delivery.allow_http = true;
    cfg.delivery.allow_private_targets = true;
    cfg.retry.base = HumanDuration(Duration::from_secs(1));
    cfg.retry.max_attempts = 3;
    cfg.retry.cap = HumanDuration(Duration::from_secs(60));
    cfg.scanner.interval = HumanDuration(Duration::from_millis(500));
    cfg.chains
        .entry("ethereum".into())
        .or_insert(ChainConfig {
            confirmations: 12,
            rpc_url: None,
            tokens: Default::default(),
        })
        .confirmations as i64
}

/// The built-in merchant receiver on a free loopback port.
async fn start_receiver(
    inbox: Shared,
) -> AppResult<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| AppError::internal(format!("cannot bind the demo receiver: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AppError::internal(format!("demo receiver address: {e}")))?;
    let app = Router::new()
        .route("/webhooks", post(receive))
        .route("/flaky", post(receive))
        .with_state(inbox);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, server))
}

async fn register_merchant(
    store: &Store,
    cfg: &Config,
    addr: SocketAddr,
    inbox: &Shared,
) -> AppResult<MerchantId> {
    let input = NewMerchant {
        name: "Demo Shop".into(),
        webhook_url: format!("http://{addr}/webhooks"),
        ..Default::default()
    };
    let created = merchants::create(store, cfg, input).await?;
    inbox.lock().unwrap_or_else(|p| p.into_inner()).secret = created.secret.expose().to_string();
    let merchant_id = created.merchant.id;
    step(&format!(
        "registered merchant {merchant_id} (secret whsec_…, scheme standard)"
    ));
    Ok(merchant_id)
}

/// Four payments, each detected at the next block: exact, short, over by
/// one wei, and one to a per-payment callback URL that fails. Returns the
/// block they were detected in.
async fn feed_payments(
    store: &Store,
    cfg: &Config,
    addr: SocketAddr,
    merchant_id: &MerchantId,
) -> AppResult<i64> {
    let id = merchant_id.as_str();
    let run = &id[id.len().saturating_sub(6)..];
    let orders = [
        ("100.00", "100.00", None),
        ("50.00", "49.99", None),
        ("1.000000000000000001", "1.000000000000000002", None),
        ("25.00", "25.00", Some(format!("http://{addr}/flaky"))),
    ];
    let head = store::chains::list(store)
        .await?
        .into_iter()
        .find(|c| c.name == "ethereum")
        .map_or(19_000_000, |c| c.head)
        + 1;
    payments::set_head(store, cfg, "ethereum", head).await?;
    for (i, (expected, received, callback)) in orders.into_iter().enumerate() {
        let input = NewPayment {
            merchant_id: merchant_id.clone(),
            reference: format!("ORDER-{run}-{}", i + 1),
            chain: "ethereum".into(),
            token: Some("USDT".into()),
            address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            expected_amount: expected.to_string(),
            callback_url: callback,
            expires_at: None,
        };
        let p = payments::create(store, cfg, input).await?;
        let sighting = Detection {
            tx_hash: format!("0x{:064x}", head as u64 * 10 + i as u64),
            amount: received.to_string(),
            block_number: head,
        };
        payments::detect(store, cfg, &p.id, sighting).await?;
        println!(
            "  {} expects {expected:>22}, detected {received:>22}",
            p.reference
        );
    }
    Ok(head)
}

/// Shows the dead letter, fixes the receiver and resubmits it.
async fn resubmit_dead_letter(
    store: &Store,
    merchant_id: &MerchantId,
    inbox: &Shared,
) -> AppResult<()> {
    let filter = dead_letters::Filter {
        merchant_id: Some(merchant_id.clone()),
        ..Default::default()
    };
    let dead = dead_letters::list(store, &filter, &Page::new(Some(10), None)?).await?;
    let Some(row) = dead.first() else {
        return Err(AppError::internal(
            "demo: expected a dead letter, found none",
        ));
    };
    step(&format!(
        "dead letter {} — event {} after {} attempts (last HTTP {}), reason {}",
        row.id,
        row.event_id,
        row.attempts,
        row.last_status_code.unwrap_or_default(),
        row.reason
    ));
    inbox.lock().unwrap_or_else(|p| p.into_inner()).broken = false;
    let new_delivery = dlq::resubmit(store, &row.id).await?;
    step(&format!(
        "receiver fixed; resubmitted as delivery {new_delivery} (same webhook-id)"
    ));
    Ok(())
}

/// What the merchant received, and whether every signature verified.
async fn report(store: &Store, inbox: &Shared) -> AppResult<()> {
    step("what the merchant received");
    let all_verified = print_inbox(inbox);
    let statuses = store::payments::count_by_status(store).await?;
    println!(
        "\n  payments by status (whole database): {}",
        statuses
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    store.close().await;
    if !all_verified {
        return Err(AppError::internal("demo: a signature did not verify"));
    }
    println!("\nDone: every webhook was signed and verified; the failed one was dead-lettered and resubmitted.");
    Ok(())
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "  {{spinner}} [{{bar:30}}] {{pos}}/{{len}} {what}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Prints what the receiver got; true if every signature verified.
fn print_inbox(inbox: &Shared) -> bool {
    let inbox = inbox.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "  {:<31} {:<19} {:<20} {:<9} {:<8} answer",
        "webhook-id", "type", "reference", "path", "verified"
    );
    for r in &inbox.received {
        println!(
            "  {:<31} {:<19} {:<20} {:<9} {:<8} {}",
            r.event_id,
            r.kind,
            r.reference,
            r.path,
            if r.verified { "yes" } else { "NO" },
            r.answered
        );
    }
    inbox.received.iter().all(|r| r.verified)
}

/// Polls this merchant's deliveries until `done(succeeded, dead)` or 60 s.
async fn wait_for(
    store: &Store,
    merchant_id: &MerchantId,
    bar: &ProgressBar,
    done: impl Fn(u64, u64) -> bool,
) -> AppResult<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = Page::new(Some(Page::MAX), None)?;
        let filter = store::deliveries::Filter {
            merchant_id: Some(merchant_id.clone()),
            ..Default::default()
        };
        let list = store::deliveries::list(store, &filter, &page).await?;
        let count = |s: DeliveryStatus| list.iter().filter(|d| d.status == s).count() as u64;
        let (ok, dead) = (
            count(DeliveryStatus::Succeeded),
            count(DeliveryStatus::Dead),
        );
        let retrying = list
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending && d.attempts > 0)
            .count();
        bar.set_position(ok + dead);
        bar.set_message(if retrying > 0 {
            format!("({retrying} retrying)")
        } else {
            String::new()
        });
        bar.tick();
        if done(ok, dead) {
            return Ok((ok, dead));
        }
        if Instant::now() > deadline {
            return Err(AppError::internal(format!(
                "demo: deliveries did not settle within 60 s ({ok} delivered, {dead} dead)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
