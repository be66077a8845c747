//! The database failing around an attempt: an outcome that cannot be
//! recorded is retried, never re-sent; a delivery left without a queued job
//! is found and queued again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use payhook::ops::merchants;

use crate::support::{on_postgres, wait_for, Env, Receiver};

/// Makes every insert into `delivery_attempts` fail, as a full disk, a
/// revoked privilege or a lock held past the write deadline would.
async fn break_attempt_writes(env: &Env) {
    if on_postgres() {
        env.exec(
            "CREATE FUNCTION refuse_attempts() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
        )
        .await;
        env.exec(
            "CREATE TRIGGER refuse_attempts BEFORE INSERT ON delivery_attempts \
             FOR EACH ROW EXECUTE FUNCTION refuse_attempts()",
        )
        .await;
    } else {
        env.exec(
            "CREATE TRIGGER refuse_attempts BEFORE INSERT ON delivery_attempts \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
        .await;
    }
}

async fn mend_attempt_writes(env: &Env) {
    if on_postgres() {
        env.exec("DROP TRIGGER refuse_attempts ON delivery_attempts")
            .await;
    } else {
        env.exec("DROP TRIGGER refuse_attempts").await;
    }
}

#[tokio::test]
async fn outcomes_the_database_refuses_are_recorded_later_and_never_resent() {
    const N: usize = 30;
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = env.merchant(&rx.url("/hook")).await;
    break_attempt_writes(&env).await;
    let pipeline = env.start();
    for _ in 0..N {
        merchants::send_test(&env.store, &m.merchant.id)
            .await
            .unwrap();
    }
    // Every delivery is POSTed (and answered 200) while its outcome cannot
    // be written.
    wait_for(Duration::from_secs(15), "every delivery POSTed", || {
        let rx = rx.clone();
        async move { (rx.hits("/hook").len() >= N).then_some(()) }
    })
    .await;
    let broken_until = Instant::now() + Duration::from_secs(8);
    tokio::time::sleep_until(broken_until.into()).await;
    assert_eq!(
        env.count("SELECT COUNT(*) FROM delivery_attempts").await,
        0,
        "nothing could be recorded while the trigger refused"
    );
    mend_attempt_writes(&env).await;
    wait_for(Duration::from_secs(30), "every delivery recorded", || {
        let env = &env;
        async move {
            let settled = env
                .count("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'")
                .await;
            (settled as usize == N).then_some(())
        }
    })
    .await;
    pipeline.stop().await.unwrap();
    let mut posts: HashMap<String, usize> = HashMap::new();
    for h in rx.hits("/hook") {
        *posts.entry(h.header("webhook-id")).or_default() += 1;
    }
    assert_eq!(posts.len(), N);
    let most = posts.values().copied().max().unwrap_or(0);
    let extra: usize = posts.values().map(|n| n - 1).sum();
    println!(
        "fault injection: {N} deliveries, attempt writes refused for ~8 s: \
         {extra} extra POSTs in all, at most {most} per delivery"
    );
    assert!(
        most <= 2,
        "a delivery was POSTed {most} times: at most one extra POST per in-flight delivery"
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM delivery_attempts").await,
        N as i64,
        "one attempt row per delivery"
    );
}

#[tokio::test]
async fn a_pending_delivery_left_without_a_job_is_queued_again() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = env.merchant(&rx.url("/hook")).await;
    let (event_id, delivery_id) = merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    assert!(delivery_id.is_some());
    // Its job is gone (a worker gave up on it, or its deferral could not be
    // written) and it has been due for a while.
    if on_postgres() {
        env.exec("DELETE FROM apalis.jobs").await;
    } else {
        env.exec("DELETE FROM Jobs").await;
    }
    env.exec("UPDATE deliveries SET next_attempt_at = next_attempt_at - 3600000")
        .await;
    let pipeline = env.start();
    let hit = wait_for(Duration::from_secs(15), "the stranded delivery", || {
        let rx = rx.clone();
        async move { rx.hits("/hook").first().cloned() }
    })
    .await;
    assert_eq!(hit.header("webhook-id"), event_id.as_str());
    wait_for(Duration::from_secs(10), "the delivery recorded", || {
        let env = &env;
        async move {
            let n = env
                .count("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'")
                .await;
            (n == 1).then_some(())
        }
    })
    .await;
    pipeline.stop().await.unwrap();
    assert_eq!(rx.hits("/hook").len(), 1);
}

/// The reconciler looks through pending deliveries a window at a time, in
/// id order, from where the last round stopped: a round costs the same
/// under any backlog, and a jobless delivery past the first window is
/// found in a later round.
#[tokio::test]
async fn the_reconciler_looks_through_pending_deliveries_a_window_at_a_time() {
    use payhook::store::jobs::{self, Window};
    let env = Env::new().await;
    let m = env.merchant("http://127.0.0.1:9/hook").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, d) = merchants::send_test(&env.store, &m.merchant.id)
            .await
            .unwrap();
        ids.push(d.unwrap());
    }
    ids.sort();
    // The middle one lost its job; all have been due for an hour.
    let mut tx = env.store.begin_write().await.unwrap();
    jobs::cancel_for_deliveries(&mut tx, std::slice::from_ref(&ids[1]))
        .await
        .unwrap();
    env.store.commit(tx, false).await.unwrap();
    env.exec("UPDATE deliveries SET next_attempt_at = next_attempt_at - 3600000")
        .await;
    let now = payhook::time::now_ms();
    let mut window = Window {
        after: String::new(),
        size: 1,
    };
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let (found, next) = jobs::jobless(env.store.db(), now, now, 10, &window)
            .await
            .unwrap();
        rounds.push(found.into_iter().map(|(id, _)| id).collect::<Vec<_>>());
        match next {
            Some(end) => window.after = end,
            None => break,
        }
    }
    assert_eq!(
        rounds,
        vec![vec![], vec![ids[1].clone()], vec![], vec![]],
        "one delivery looked at per round; the jobless one found in the second; the fourth round ends the pass"
    );
}
