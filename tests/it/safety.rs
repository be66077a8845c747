//! Delivery safety and fairness: SSRF vetting on resolved addresses,
//! Retry-After, 410 Gone, the circuit breaker, disable_after, endpoint
//! isolation, retry/first-attempt fairness, secret rotation, failure modes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use payhook::config::HumanDuration;
use payhook::error::ErrorKind;
use payhook::ops::merchants::{self, NewMerchant};
use payhook::store::{deliveries, merchants as merchant_rows};

use crate::support::{black_hole, raw_server, wait_for, Env, Receiver, Reply};
use payhook::domain::Lane;
use payhook::ids::DeliveryId;
use payhook::store::jobs::{self, DeliveryJob, NewJob};

async fn attempts_of(
    env: &Env,
    delivery_id: &DeliveryId,
) -> Vec<(i64, Option<i64>, Option<String>, Option<String>)> {
    payhook::store::query(payhook::store::Sql::both("SELECT attempt, status_code, error_kind, response_body FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt"))
    .bind(delivery_id)
    .fetch_all(env.store.db())
    .await
    .unwrap()
}

async fn settled(env: &Env, delivery_id: &DeliveryId) -> deliveries::Delivery {
    wait_for(
        Duration::from_secs(30),
        "the delivery to settle",
        || async {
            let d = deliveries::get(&env.store, delivery_id).await.unwrap();
            (d.status.as_str() != "pending").then_some(d)
        },
    )
    .await
}

#[tokio::test]
async fn names_resolving_to_private_addresses_are_refused_at_creation_and_at_send_time() {
    let env = Env::with(|c| c.delivery.allow_private_targets = false).await;
    let rx = Receiver::start().await;
    let url = format!("http://localhost:{}/x", rx.addr.port());
    let e = merchants::create(
        &env.store,
        &env.cfg,
        NewMerchant {
            name: "n".into(),
            webhook_url: url.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(e.message.contains("not a public address"), "{}", e.message);

    // Registered while private targets were allowed, sent after they are not:
    // the resolver's answer is checked at send time and nothing is sent.
    let mut open = env.cfg.clone();
    open.delivery.allow_private_targets = true;
    let m = merchants::create(
        &env.store,
        &open,
        NewMerchant {
            name: "n".into(),
            webhook_url: url,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (_, d) = merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    let d = settled(&env, &d.unwrap()).await;
    pipeline.stop().await.unwrap();
    assert_eq!(d.status.as_str(), "dead");
    assert!(
        rx.all_hits().is_empty(),
        "nothing may reach a private address"
    );
    let (reason,): (String,) =
        payhook::store::query(payhook::store::Sql::both("SELECT reason FROM dead_letters"))
            .fetch_one(env.store.db())
            .await
            .unwrap();
    assert_eq!(reason, "rejected_target");
    let a = attempts_of(&env, &d.id).await;
    assert_eq!(a[0].2.as_deref(), Some("rejected_target"));
}

#[tokio::test]
async fn retry_after_on_429_and_503_delays_the_next_attempt() {
    let env = Env::with(|c| c.retry.max_attempts = 3).await;
    let rx = Receiver::start().await;
    rx.script(
        "/busy",
        vec![
            Reply {
                status: 429,
                headers: vec![("retry-after", "3".into())],
                body: None,
            },
            200.into(),
        ],
    );
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(4));
    rx.script(
        "/maint",
        vec![
            Reply {
                status: 503,
                headers: vec![("retry-after", date)],
                body: None,
            },
            200.into(),
        ],
    );
    let busy = env.merchant(&rx.url("/busy")).await;
    let maint = env.merchant(&rx.url("/maint")).await;
    let (_, d1) = merchants::send_test(&env.store, &busy.merchant.id)
        .await
        .unwrap();
    let (_, d2) = merchants::send_test(&env.store, &maint.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    settled(&env, &d1.unwrap()).await;
    settled(&env, &d2.unwrap()).await;
    pipeline.stop().await.unwrap();
    let b = rx.hits("/busy");
    let gap = b[1].at - b[0].at;
    assert!(
        gap >= Duration::from_millis(2950),
        "Retry-After: 3 honoured, waited {gap:?} (base is 1s)"
    );
    let m = rx.hits("/maint");
    let gap = m[1].at - m[0].at;
    assert!(
        gap >= Duration::from_millis(2500),
        "HTTP-date Retry-After honoured, waited {gap:?}"
    );
}

#[tokio::test]
async fn gone_kills_the_delivery_disables_the_endpoint_and_enable_resumes_waiting_deliveries() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    rx.script("/gone", vec![410.into(), 200.into()]);
    let m = env.merchant(&rx.url("/gone")).await;
    let (_, first) = merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    let d = settled(&env, &first.unwrap()).await;
    assert_eq!((d.status.as_str(), d.attempts), ("dead", 1));
    let (reason,): (String,) =
        payhook::store::query(payhook::store::Sql::both("SELECT reason FROM dead_letters"))
            .fetch_one(env.store.db())
            .await
            .unwrap();
    assert_eq!(reason, "gone");
    let row = merchant_rows::get(&env.store, &m.merchant.id)
        .await
        .unwrap();
    assert_eq!(row.status.as_str(), "disabled");
    assert!(row.disabled_reason.unwrap_or_default().contains("410"));

    // A new event waits, unattempted, while the endpoint is disabled...
    let (_, second) = merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let second = second.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let d = deliveries::get(&env.store, &second).await.unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("pending", 0));
    assert_eq!(rx.hits("/gone").len(), 1);
    // ...and goes once the merchant is enabled again.
    merchants::enable(&env.store, &m.merchant.id).await.unwrap();
    let d = settled(&env, &second).await;
    pipeline.stop().await.unwrap();
    assert_eq!(d.status.as_str(), "succeeded");
}

#[tokio::test]
async fn open_circuit_holds_deliveries_without_counting_attempts() {
    let env = Env::with(|c| {
        c.circuit.failure_threshold = 3;
        c.circuit.cooldown = HumanDuration(Duration::from_secs(2));
        c.delivery.max_in_flight_per_endpoint = 1;
        c.retry.max_attempts = 10;
        c.retry.base = HumanDuration(Duration::from_secs(30));
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/flaky", vec![500.into()]);
    let m = env.merchant(&rx.url("/flaky")).await;
    let mut ids = vec![];
    for _ in 0..6 {
        ids.push(
            merchants::send_test(&env.store, &m.merchant.id)
                .await
                .unwrap()
                .1
                .unwrap(),
        );
    }
    let pipeline = env.start();
    wait_for(Duration::from_secs(10), "three failed attempts", || {
        let rx = rx.clone();
        async move { (rx.hits("/flaky").len() >= 3).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rx.hits("/flaky").len(),
        3,
        "the circuit is open: no more requests"
    );
    let attempted = env.count("SELECT COUNT(*) FROM delivery_attempts").await;
    assert_eq!(attempted, 3, "held deliveries record no attempt");
    // Which three went first is the workers' choice: the other three were
    // held. After the cooldown one probe goes; the endpoint recovers; the
    // held ones land on their first attempt.
    let tried: Vec<String> = payhook::store::query(payhook::store::Sql::both(
        "SELECT delivery_id FROM delivery_attempts",
    ))
    .scalars(env.store.db())
    .await
    .unwrap();
    let held: Vec<&DeliveryId> = ids
        .iter()
        .filter(|id| !tried.iter().any(|t| t == id.as_str()))
        .collect();
    assert_eq!(held.len(), 3, "three attempted, three held");
    rx.script("/flaky", vec![200.into()]);
    for id in held {
        let d = settled(&env, id).await;
        assert_eq!(
            (d.status.as_str(), d.attempts),
            ("succeeded", 1),
            "held deliveries used no attempt"
        );
    }
    pipeline.stop().await.unwrap();
}

#[tokio::test]
async fn endpoint_failing_past_disable_after_is_disabled_and_its_deliveries_dead_lettered() {
    let env = Env::with(|c| {
        c.circuit.disable_after = HumanDuration(Duration::from_secs(2));
        c.circuit.failure_threshold = 1000;
        c.retry.max_attempts = 50;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/down", vec![500.into()]);
    let m = env.merchant(&rx.url("/down")).await;
    let mut ids = vec![];
    for _ in 0..3 {
        ids.push(
            merchants::send_test(&env.store, &m.merchant.id)
                .await
                .unwrap()
                .1
                .unwrap(),
        );
    }
    let pipeline = env.start();
    for id in &ids {
        let d = settled(&env, id).await;
        assert_eq!(d.status.as_str(), "dead");
    }
    pipeline.stop().await.unwrap();
    let reasons: Vec<(String,)> =
        payhook::store::query(payhook::store::Sql::both("SELECT reason FROM dead_letters"))
            .fetch_all(env.store.db())
            .await
            .unwrap();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons.iter().all(|(r,)| r == "endpoint_disabled"),
        "{reasons:?}"
    );
    let row = merchant_rows::get(&env.store, &m.merchant.id)
        .await
        .unwrap();
    assert_eq!(row.status.as_str(), "disabled");
    for lane in [Lane::First, Lane::Retry] {
        assert_eq!(jobs::count(env.store.db(), lane).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn black_holed_endpoint_holds_only_its_cap_and_does_not_slow_healthy_ones() {
    let env = Env::with(|c| {
        c.delivery.max_in_flight_per_endpoint = 2;
        c.delivery.timeout = HumanDuration(Duration::from_secs(5));
        c.delivery.concurrency = 8;
    })
    .await;
    let (hole, open) = black_hole().await;
    let rx = Receiver::start().await;
    let stuck = env.merchant(&format!("http://{hole}/hook")).await;
    let healthy = env.merchant(&rx.url("/ok")).await;
    for _ in 0..20 {
        merchants::send_test(&env.store, &stuck.merchant.id)
            .await
            .unwrap();
    }
    let pipeline = env.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for _ in 0..20 {
        merchants::send_test(&env.store, &healthy.merchant.id)
            .await
            .unwrap();
    }
    wait_for(
        Duration::from_secs(4),
        "healthy deliveries despite the black hole",
        || {
            let rx = rx.clone();
            async move { (rx.hits("/ok").len() >= 20).then_some(()) }
        },
    )
    .await;
    let took = started.elapsed();
    assert!(
        open.load(Ordering::SeqCst) <= 2,
        "the black hole holds at most its in-flight cap"
    );
    pipeline.stop().await.unwrap();
    assert!(
        took < Duration::from_secs(4),
        "healthy deliveries took {took:?}"
    );
}

#[tokio::test]
async fn first_attempts_are_not_starved_by_a_retry_backlog() {
    let env = Env::with(|c| {
        c.delivery.concurrency = 8;
        c.retry.max_attempts = 5;
    })
    .await;
    let (hole, _) = black_hole().await;
    let rx = Receiver::start().await;
    let failing = env.merchant(&format!("http://{hole}/slow")).await;
    let healthy = env.merchant(&rx.url("/fresh")).await;
    // 2,000 deliveries whose next (second) attempt is due now, on the retry lane.
    let mut tx = env.store.begin_write().await.unwrap();
    let mid = failing.merchant.id.clone();
    let targets = payhook::store::endpoints::targets_in(&mut tx, &mid)
        .await
        .unwrap();
    let primary = &targets.endpoints[0];
    let mut ids = Vec::new();
    for _ in 0..2000 {
        let now = payhook::time::now_ms();
        let (_, d) = payhook::store::events::emit_test(&mut tx, &mid, primary, now)
            .await
            .unwrap();
        ids.push(d.unwrap());
    }
    // Their first attempts happened: second attempts are due on the retry lane.
    jobs::cancel_for_deliveries(&mut tx, &ids).await.unwrap();
    let now = payhook::time::now_ms();
    let retries: Vec<NewJob> = ids
        .iter()
        .map(|id| NewJob {
            job: DeliveryJob {
                delivery_id: id.clone(),
                attempt: 2,
            },
            run_at_ms: now,
            lane: Lane::Retry,
        })
        .collect();
    jobs::push_many(&mut tx, &retries).await.unwrap();
    tx.commit().await.unwrap();
    env.exec("UPDATE deliveries SET attempts = 1").await;
    let pipeline = env.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for _ in 0..10 {
        merchants::send_test(&env.store, &healthy.merchant.id)
            .await
            .unwrap();
    }
    wait_for(
        Duration::from_secs(5),
        "new events despite 2000 due retries",
        || {
            let rx = rx.clone();
            async move { (rx.hits("/fresh").len() >= 10).then_some(()) }
        },
    )
    .await;
    let took = started.elapsed();
    let backlog = env
        .count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
        .await;
    pipeline.stop().await.unwrap();
    assert!(
        backlog > 1000,
        "the retry backlog is still there ({backlog}), yet new events went out in {took:?}"
    );
}

#[tokio::test]
async fn during_rotation_both_secrets_verify_with_the_official_library() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = env.merchant(&rx.url("/rot")).await;
    let old = m.secret.clone();
    let rotated = merchants::rotate_secret(&env.store, &m.merchant.id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_ne!(rotated.secret, old);
    merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    let hit = wait_for(Duration::from_secs(10), "a delivery", || {
        let rx = rx.clone();
        async move { rx.hits("/rot").first().cloned() }
    })
    .await;
    pipeline.stop().await.unwrap();
    let sigs: Vec<&str> = hit.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(sigs.len(), 2, "two signatures during the overlap");
    for secret in [&old, &rotated.secret] {
        standardwebhooks::Webhook::new(secret.expose())
            .unwrap()
            .verify(&hit.body, &hit.headers)
            .unwrap();
    }
    // New first: a receiver with only the new secret matches the first entry.
    let new_only = payhook::delivery::signer::standard_signature(
        &payhook::delivery::signer::standard_key(rotated.secret.expose()).unwrap(),
        &hit.header("webhook-id"),
        hit.header("webhook-timestamp").parse().unwrap(),
        &hit.body,
    );
    assert_eq!(sigs[0], new_only);

    // After the overlap only the new secret signs.
    let env2 = Env::new().await;
    let rx2 = Receiver::start().await;
    let m2 = env2.merchant(&rx2.url("/rot")).await;
    merchants::rotate_secret(&env2.store, &m2.merchant.id, Duration::ZERO)
        .await
        .unwrap();
    merchants::send_test(&env2.store, &m2.merchant.id)
        .await
        .unwrap();
    let pipeline = env2.start();
    let hit = wait_for(Duration::from_secs(10), "a delivery", || {
        let rx = rx2.clone();
        async move { rx.hits("/rot").first().cloned() }
    })
    .await;
    pipeline.stop().await.unwrap();
    assert_eq!(hit.header("webhook-signature").split(' ').count(), 1);
    assert!(standardwebhooks::Webhook::new(m2.secret.expose())
        .unwrap()
        .verify(&hit.body, &hit.headers)
        .is_err());
}

#[tokio::test]
async fn failure_modes_are_classified_and_recorded() {
    let env = Env::with(|c| {
        c.retry.max_attempts = 1;
        c.delivery.timeout = HumanDuration(Duration::from_millis(1500));
        c.delivery.max_response_bytes = 100;
    })
    .await;
    let (hole, _) = black_hole().await;
    let big = raw_server(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000\r\n\r\n",
        vec![b'x'; 100_000],
        false,
    )
    .await;
    let reset = raw_server(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\n\r\n",
        vec![b'y'; 1000],
        true,
    )
    .await;
    let ok_reset = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        vec![b'z'; 1000],
        true,
    )
    .await;
    // NUL bytes (which Postgres text cannot hold) and invalid UTF-8 in a
    // body are stored as U+FFFD; the attempt is recorded like any other.
    let nul = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        b"ok\0\xffdone!".to_vec(),
        false,
    )
    .await;
    let cases = [
        (format!("http://{hole}/hang"), "dead", Some("timeout")),
        (format!("http://{nul}/nul"), "succeeded", None),
        (format!("http://{big}/big"), "dead", Some("status")),
        (format!("http://{reset}/reset"), "dead", Some("status")),
        (format!("http://{ok_reset}/okreset"), "succeeded", None),
    ];
    let mut ids = vec![];
    for (url, _, _) in &cases {
        let m = env.merchant(url).await;
        ids.push(
            merchants::send_test(&env.store, &m.merchant.id)
                .await
                .unwrap()
                .1
                .unwrap(),
        );
    }
    let pipeline = env.start();
    for ((url, status, kind), id) in cases.iter().zip(&ids) {
        let d = settled(&env, id).await;
        assert_eq!(d.status.as_str(), *status, "{url}");
        let a = attempts_of(&env, id).await;
        assert_eq!(a.len(), 1, "{url}");
        assert_eq!(a[0].2.as_deref(), *kind, "{url}");
        if url.ends_with("/big") {
            assert_eq!(
                a[0].3.as_deref().map(str::len),
                Some(100),
                "body prefix capped at max_response_bytes"
            );
        }
        if url.ends_with("/nul") {
            assert_eq!(a[0].3.as_deref(), Some("ok\u{fffd}\u{fffd}done!"));
        }
    }
    pipeline.stop().await.unwrap();
    let dead = env
        .count("SELECT COUNT(*) FROM dead_letters WHERE reason = 'exhausted'")
        .await;
    assert_eq!(dead, 3);
}
