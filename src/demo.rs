//! `payhook demo`: the whole pipeline against a built-in merchant receiver on
//! 127.0.0.1. Registers a merchant, feeds four payments through detection →
//! confirmation → signed delivery; one delivery fails, retries, lands in the
//! DLQ and is resubmitted once the receiver is "fixed".

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
use crate::error::{AppError, AppResult};
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

pub async fn run(mut cfg: Config) -> AppResult<()> {
    // The demo talks to its own receiver on loopback over plain HTTP, and
    // retries fast so the dead-letter path shows within seconds.
    cfg.delivery.allow_http = true;
    cfg.delivery.allow_private_targets = true;
    cfg.retry.base = HumanDuration(Duration::from_secs(1));
    cfg.retry.max_attempts = 3;
    cfg.retry.cap = HumanDuration(Duration::from_secs(60));
    cfg.scanner.interval = HumanDuration(Duration::from_millis(500));
    let confirmations = cfg
        .chains
        .entry("ethereum".into())
        .or_insert(ChainConfig {
            confirmations: 12,
            rpc_url: None,
        })
        .confirmations as i64;

    println!(
        "payhook demo — database {}",
        store::redact_url(&cfg.database.url)
    );
    let store = crate::cli::open(&cfg).await?;

    let inbox: Shared = Arc::new(Mutex::new(Inbox {
        broken: true,
        ..Default::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| AppError::internal(format!("cannot bind the demo receiver: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AppError::internal(format!("demo receiver address: {e}")))?;
    let app = Router::new()
        .route("/webhooks", post(receive))
        .route("/flaky", post(receive))
        .with_state(inbox.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    step(&format!("merchant receiver listening on http://{addr}"));

    let pipeline = Pipeline::start(
        &store,
        &cfg,
        Parts {
            scanner: true,
            sender: true,
        },
    )?;

    let created = merchants::create(
        &store,
        &cfg,
        NewMerchant {
            name: "Demo Shop".into(),
            webhook_url: format!("http://{addr}/webhooks"),
            ..Default::default()
        },
    )
    .await?;
    inbox.lock().unwrap_or_else(|p| p.into_inner()).secret = created.secret.clone();
    let merchant_id = created.merchant.id.clone();
    step(&format!(
        "registered merchant {merchant_id} (secret whsec_…, scheme standard)"
    ));

    let run = &merchant_id[merchant_id.len() - 6..];
    let orders = [
        ("100.00", "100.00", None),
        ("50.00", "49.99", None),
        ("1.000000000000000001", "1.000000000000000002", None),
        ("25.00", "25.00", Some(format!("http://{addr}/flaky"))),
    ];
    let head = store::chains::list(&store)
        .await?
        .into_iter()
        .find(|c| c.name == "ethereum")
        .map(|c| c.head)
        .unwrap_or(19_000_000)
        + 1;
    payments::set_head(&store, &cfg, "ethereum", head).await?;
    for (i, (expected, received, callback)) in orders.iter().enumerate() {
        let p = payments::create(
            &store,
            &cfg,
            NewPayment {
                merchant_id: merchant_id.clone(),
                reference: format!("ORDER-{run}-{}", i + 1),
                chain: "ethereum".into(),
                token: Some("USDT".into()),
                address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
                expected_amount: expected.to_string(),
                callback_url: callback.clone(),
                expires_at: None,
            },
        )
        .await?;
        payments::detect(
            &store,
            &cfg,
            &p.id,
            Detection {
                tx_hash: format!("0x{:064x}", head as u64 * 10 + i as u64),
                amount: received.to_string(),
                block_number: head,
            },
        )
        .await?;
        println!(
            "  {} expects {expected:>22}, detected {received:>22}",
            p.reference
        );
    }
    step(&format!(
        "chain head advances to {} ({confirmations} confirmations)",
        head + confirmations - 1
    ));
    payments::set_head(&store, &cfg, "ethereum", head + confirmations - 1).await?;

    let bar = ProgressBar::new(8);
    bar.set_style(
        ProgressStyle::with_template(
            "  {spinner} [{bar:30}] {pos}/{len} deliveries settled  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let settled = wait_for(&store, &merchant_id, &bar, |ok, dead| {
        ok + dead >= 8 && dead >= 1
    })
    .await?;
    bar.finish_with_message(format!("{} delivered, {} dead", settled.0, settled.1));

    let filter = dead_letters::Filter {
        merchant_id: Some(merchant_id.clone()),
        ..Default::default()
    };
    let dead = dead_letters::list(&store, &filter, &Page::new(Some(10), None)?).await?;
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
    let new_delivery = dlq::resubmit(&store, &row.id).await?;
    step(&format!(
        "receiver fixed; resubmitted as delivery {new_delivery} (same webhook-id)"
    ));
    let bar = ProgressBar::new(9);
    bar.set_style(
        ProgressStyle::with_template("  {spinner} [{bar:30}] {pos}/{len} deliveries settled")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    wait_for(&store, &merchant_id, &bar, |ok, _| ok >= 8).await?;
    bar.finish();

    pipeline.stop().await?;
    server.abort();

    step("what the merchant received");
    let all_verified = print_inbox(&inbox);
    let statuses = store::payments::count_by_status(&store).await?;
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
    merchant_id: &str,
    bar: &ProgressBar,
    done: impl Fn(u64, u64) -> bool,
) -> AppResult<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = Page::new(Some(Page::MAX), None)?;
        let list = store::deliveries::list(store, None, Some(merchant_id), None, &page).await?;
        let ok = list.iter().filter(|d| d.status == "succeeded").count() as u64;
        let dead = list.iter().filter(|d| d.status == "dead").count() as u64;
        let retrying = list
            .iter()
            .filter(|d| d.status == "pending" && d.attempts > 0)
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
