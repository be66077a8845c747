//! Retention: finished deliveries, dead letters and the events nothing
//! refers to any more are deleted once older than `retention.*`; nothing
//! pending is touched.

use std::time::Duration;

use payhook::config::{HumanDuration, RetentionConfig};
use payhook::delivery::housekeeping::apply_retention;
use payhook::ops::merchants;

use crate::support::{wait_for, Env, Receiver};

fn keep(succeeded: Duration, dead: Duration) -> RetentionConfig {
    RetentionConfig {
        succeeded: HumanDuration(succeeded),
        dead: HumanDuration(dead),
    }
}

#[tokio::test]
async fn old_finished_rows_go_and_pending_ones_stay() {
    let env = Env::with(|c| {
        c.retry.max_attempts = 1;
        c.circuit.failure_threshold = 1000;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/down", vec![503.into()]);
    let ok = env.merchant(&rx.url("/ok")).await;
    let down = env.merchant(&rx.url("/down")).await;
    for _ in 0..5 {
        merchants::send_test(&env.store, &ok.merchant.id)
            .await
            .unwrap();
        merchants::send_test(&env.store, &down.merchant.id)
            .await
            .unwrap();
    }
    let pipeline = env.start();
    wait_for(
        Duration::from_secs(20),
        "5 delivered and 5 dead",
        || async {
            let finished = env
                .count("SELECT COUNT(*) FROM deliveries WHERE status <> 'pending'")
                .await;
            (finished == 10).then_some(())
        },
    )
    .await;
    pipeline.stop().await.unwrap();
    // One more, never sent: pending whatever its age.
    merchants::send_test(&env.store, &ok.merchant.id)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Succeeded deliveries older than 1 s go, with their attempts and
    // their events; dead letters (kept 1 h) and what they refer to stay.
    let day = Duration::from_secs(86400);
    let n = apply_retention(&env.store, &keep(Duration::from_secs(1), day))
        .await
        .unwrap();
    assert_eq!(n, 10, "5 deliveries and their 5 events");
    let count = |sql: &'static str| env.count(sql);
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'").await,
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries WHERE status = 'dead'").await,
        5
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'").await,
        1
    );
    assert_eq!(count("SELECT COUNT(*) FROM dead_letters").await, 5);
    assert_eq!(count("SELECT COUNT(*) FROM delivery_attempts").await, 5);
    assert_eq!(count("SELECT COUNT(*) FROM events").await, 6);

    // Then the dead letters, their deliveries and events.
    let n = apply_retention(
        &env.store,
        &keep(Duration::from_secs(1), Duration::from_secs(1)),
    )
    .await
    .unwrap();
    assert_eq!(
        n, 10,
        "5 dead letters (with their deliveries) and their 5 events"
    );
    assert_eq!(count("SELECT COUNT(*) FROM dead_letters").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM delivery_attempts").await, 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries").await,
        1,
        "the pending one"
    );
    assert_eq!(count("SELECT COUNT(*) FROM events").await, 1);
    // Nothing older is left: a second pass deletes nothing.
    let again = apply_retention(
        &env.store,
        &keep(Duration::from_secs(1), Duration::from_secs(1)),
    )
    .await
    .unwrap();
    assert_eq!(again, 0);
}
