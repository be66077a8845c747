//! The figures the console overview computes from the tables, on both
//! backends: the event → 2xx latency sample.

use payhook::ops::merchants;
use payhook::store::stats;
use payhook::time::now_ms;

use crate::support::Env;

/// Sets a delivery's outcome: `status`, finished `after_ms` after its event,
/// created `age_ms` ago.
async fn settle(env: &Env, id: &str, status: &str, after_ms: i64, age_ms: i64) {
    let created = now_ms() - age_ms;
    env.exec_string(format!(
        "UPDATE events SET created_at = {created} WHERE id = \
         (SELECT event_id FROM deliveries WHERE id = '{id}')"
    ))
    .await;
    env.exec_string(format!(
        "UPDATE deliveries SET status = '{status}', created_at = {created}, \
         completed_at = {} WHERE id = '{id}'",
        created + after_ms
    ))
    .await;
}

/// Only succeeded deliveries count, only those of the window, and a
/// merchant's figure has only its own.
#[tokio::test]
async fn latency_sample_is_the_succeeded_deliveries_of_the_window() {
    let env = Env::new().await;
    let a = env.merchant("http://127.0.0.1:9/a").await.merchant.id;
    let b = env.merchant("http://127.0.0.1:9/b").await.merchant.id;
    let hour = 3_600_000;
    let mut sent = Vec::new();
    for (m, status, after, age) in [
        (&a, "succeeded", 100, 1_000),
        (&a, "succeeded", 300, 2_000),
        (&a, "dead", 50, 3_000),
        (&b, "succeeded", 700, 4_000),
        (&a, "succeeded", 5, 2 * hour),
    ] {
        let (_, d) = merchants::send_test(&env.store, m).await.unwrap();
        sent.push((d.unwrap(), status, after, age));
    }
    // One still pending: no latency yet.
    merchants::send_test(&env.store, &b).await.unwrap();
    for (d, status, after, age) in &sent {
        settle(&env, d.as_str(), status, *after, *age).await;
    }
    let now = now_ms();
    let of = |since: i64, m: Option<&payhook::ids::MerchantId>| {
        let (store, m) = (env.store.clone(), m.cloned());
        async move { stats::latencies(&store, since, m.as_ref()).await.unwrap() }
    };
    assert_eq!(of(now - hour, None).await, [100, 300, 700]);
    assert_eq!(of(now - 24 * hour, None).await, [5, 100, 300, 700]);
    assert_eq!(of(now - hour, Some(&a)).await, [100, 300]);
    assert_eq!(of(now - 24 * hour, Some(&a)).await, [5, 100, 300]);
    assert_eq!(of(now - hour, Some(&b)).await, [700]);

    // A backlog newer than every succeeded delivery, larger than a page of
    // the look-up: the sample is still found behind it.
    let mut tx = env.store.begin_write().await.unwrap();
    let targets = payhook::store::endpoints::targets_in(&mut tx, &a)
        .await
        .unwrap();
    for _ in 0..6_000 {
        payhook::store::events::emit_test(&mut tx, &a, &targets.endpoints[0], now_ms())
            .await
            .unwrap();
    }
    env.store.commit(tx, true).await.unwrap();
    assert_eq!(of(now - hour, None).await, [100, 300, 700]);
    assert_eq!(of(now - hour, Some(&a)).await, [100, 300]);
}
