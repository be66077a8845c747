//! Retries with the configured backoff, dead-lettering after the last
//! attempt, and resubmission with the same webhook-id.

use std::time::Duration;

use payhook::delivery::dlq;
use payhook::error::ErrorKind;
use payhook::store::{dead_letters, deliveries, Page};

use crate::support::{wait_for, Env, Receiver};

#[tokio::test]
async fn retries_back_off_then_dead_letter_then_resubmit_once() {
    // base 1s, jitter 0, 3 attempts: delays of 1 s then 2 s.
    let env = Env::new().await;
    let rx = Receiver::start().await;
    rx.script("/down", vec![500.into()]);
    let m = env.merchant(&rx.url("/down")).await;
    let (event_id, delivery_id) = payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let delivery_id = delivery_id.unwrap();
    let pipeline = env.start();

    wait_for(Duration::from_secs(30), "the dead letter", || async {
        (env.count("SELECT COUNT(*) FROM dead_letters").await == 1).then_some(())
    })
    .await;

    let hits = rx.hits("/down");
    assert_eq!(hits.len(), 3, "exactly max_attempts attempts");
    let d1 = hits[1].at - hits[0].at;
    let d2 = hits[2].at - hits[1].at;
    // Never early. The late bound only catches a schedule that ignores the
    // backoff: the queue schedules in whole seconds (up to +1 s) and polls,
    // and CI runs this beside the rest of the suite and a Postgres server.
    assert!(
        d1 >= Duration::from_millis(950) && d1 < Duration::from_millis(5000),
        "first delay {d1:?}"
    );
    assert!(
        d2 >= Duration::from_millis(1950) && d2 < Duration::from_millis(6500),
        "second delay {d2:?}"
    );
    assert!(hits
        .iter()
        .all(|h| h.header("webhook-id") == event_id.as_str()));

    let d = deliveries::get(&env.store, &delivery_id).await.unwrap();
    assert_eq!(
        (d.status.as_str(), d.attempts, d.last_status_code),
        ("dead", 3, Some(500))
    );
    let attempts = deliveries::attempts(&env.store, &delivery_id)
        .await
        .unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(attempts
        .iter()
        .all(|a| a.status_code == Some(500) && a.error_kind.map(|k| k.as_str()) == Some("status")));
    assert_eq!(attempts[0].response_body.as_deref(), Some("ok"));

    let rows = dead_letters::list(
        &env.store,
        &Default::default(),
        &Page::new(None, None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.reason.as_str(), row.attempts, row.delivery_id.as_str()),
        ("exhausted", 3, delivery_id.as_str())
    );
    assert_eq!(row.event_id, event_id);

    // The receiver recovers; the resubmission delivers the same event id.
    rx.script("/down", vec![200.into()]);
    let new_delivery = dlq::resubmit(&env.store, &row.id).await.unwrap();
    assert_ne!(new_delivery, delivery_id);
    wait_for(
        Duration::from_secs(20),
        "the resubmitted delivery",
        || async {
            let d = deliveries::get(&env.store, &new_delivery).await.unwrap();
            (d.status.as_str() == "succeeded").then_some(())
        },
    )
    .await;
    pipeline.stop().await.unwrap();
    let hits = rx.hits("/down");
    assert_eq!(hits.len(), 4);
    assert_eq!(hits[3].header("webhook-id"), event_id.as_str());
    assert_eq!(hits[3].body, hits[0].body, "the same body is sent again");

    let again = dlq::resubmit(&env.store, &row.id).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::Conflict, "{}", again.message);
    let row = dead_letters::get(&env.store, &row.id).await.unwrap();
    assert_eq!(row.resubmitted_delivery_id.as_ref(), Some(&new_delivery));
}

#[tokio::test]
async fn connection_refused_is_retried_and_recorded() {
    let env = Env::with(|c| c.retry.max_attempts = 2).await;
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/gone", closed.local_addr().unwrap());
    drop(closed);
    let m = env.merchant(&url).await;
    payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    wait_for(Duration::from_secs(30), "the dead letter", || async {
        (env.count("SELECT COUNT(*) FROM dead_letters").await == 1).then_some(())
    })
    .await;
    pipeline.stop().await.unwrap();
    let kinds: Vec<(String,)> = payhook::store::query(payhook::store::Sql::both(
        "SELECT error_kind FROM delivery_attempts ORDER BY attempt",
    ))
    .fetch_all(env.store.db())
    .await
    .unwrap();
    assert_eq!(kinds, [("connect".to_string(),), ("connect".to_string(),)]);
}

#[tokio::test]
async fn bulk_resubmit_by_filter_skips_rows_already_resubmitted() {
    let env = Env::with(|c| c.retry.max_attempts = 1).await;
    let rx = Receiver::start().await;
    rx.script("/x", vec![503.into()]);
    let m = env.merchant(&rx.url("/x")).await;
    for _ in 0..3 {
        payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
            .await
            .unwrap();
    }
    let pipeline = env.start();
    wait_for(Duration::from_secs(20), "three dead letters", || async {
        (env.count("SELECT COUNT(*) FROM dead_letters").await == 3).then_some(())
    })
    .await;
    pipeline.stop().await.unwrap();
    let rows = dead_letters::list(
        &env.store,
        &Default::default(),
        &Page::new(None, None).unwrap(),
    )
    .await
    .unwrap();
    dlq::resubmit(&env.store, &rows[0].id).await.unwrap();
    let filter = dead_letters::Filter {
        merchant_id: Some(m.merchant.id.clone()),
        reason: Some(payhook::domain::DeadReason::Exhausted),
        ..Default::default()
    };
    assert_eq!(
        dlq::resubmit_matching(&env.store, &filter, "dead_letter.resubmit_matching", None)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        dlq::resubmit_matching(&env.store, &filter, "dead_letter.resubmit_matching", None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .await,
        3
    );
}

/// Two bulk resubmissions of the same rows at once (two admins, two
/// processes): each dead letter gets exactly one new delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bulk_resubmissions_make_one_delivery_per_dead_letter() {
    const N: i64 = 40;
    let env = Env::with(|c| {
        c.retry.max_attempts = 1;
        c.circuit.failure_threshold = 1000;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/x", vec![503.into()]);
    let m = env.merchant(&rx.url("/x")).await;
    for _ in 0..N {
        payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
            .await
            .unwrap();
    }
    let pipeline = env.start();
    wait_for(Duration::from_secs(30), "the dead letters", || async {
        (env.count("SELECT COUNT(*) FROM dead_letters").await == N).then_some(())
    })
    .await;
    pipeline.stop().await.unwrap();
    let filter = dead_letters::Filter::default();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let (store, filter) = (env.store.clone(), filter.clone());
            tokio::spawn(async move {
                dlq::resubmit_matching(&store, &filter, "dead_letter.resubmit_matching", None).await
            })
        })
        .collect();
    let mut total = 0;
    for r in runs {
        total += r.await.unwrap().unwrap();
    }
    assert_eq!(total, N as u64, "each row counted by exactly one run");
    assert_eq!(
        env.count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .await,
        N,
        "one new delivery per dead letter"
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM dead_letters WHERE resubmitted_delivery_id IN (SELECT id FROM deliveries)")
            .await,
        N
    );
}
