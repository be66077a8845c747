//! kill -9 of a running `payhook serve`, several times mid-run: no event is
//! lost (each is delivered), no payment is confirmed twice.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::Rng;

use crate::support::{payhook_bin, wait_for, write_config, Env, Receiver};

fn spawn_serve(config: &std::path::Path) -> Child {
    Command::new(payhook_bin())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_loses_no_event_and_confirms_nothing_twice() {
    let env = Env::with(|c| {
        c.scanner.batch_size = 10;
        c.retry.max_attempts = 20;
        c.delivery.concurrency = 8;
    })
    .await;
    let config = write_config(env.dir.path(), &env.cfg);
    let rx = Receiver::start().await;
    let m = env.merchant(&rx.url("/crash")).await;
    env.set_head(100).await;
    let mut next = 0;
    for _ in 0..120 {
        next += 1;
        env.detected_payment(&m.merchant.id, &format!("C{next}"), "1.5", "1.5", 100)
            .await;
    }
    env.set_head(111).await;

    let mut rng = rand::rng();
    for _round in 0..5 {
        let mut child = spawn_serve(&config);
        // More sightings arrive while the service runs, so kills land in
        // the middle of scans and deliveries alike.
        let until = std::time::Instant::now() + Duration::from_millis(rng.random_range(300..900));
        while std::time::Instant::now() < until {
            next += 1;
            env.detected_payment(&m.merchant.id, &format!("C{next}"), "1.5", "1.5", 105)
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    env.set_head(120).await;

    let mut child = spawn_serve(&config);
    let total = next;
    wait_for(
        Duration::from_secs(90),
        "every payment confirmed and every delivery succeeded",
        || async {
            let confirmed = env
                .count("SELECT COUNT(*) FROM payments WHERE status = 'confirmed'")
                .await;
            let unsettled = env
                .count("SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'")
                .await;
            (confirmed == total as i64 && unsettled == 0).then_some(())
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Exactly one detected and one confirmed event per payment.
    let per_payment: Vec<(String, i64, i64)> = payhook::store::query(payhook::store::Sql::both(
        "SELECT p.id, \
         COUNT(CASE WHEN e.type = 'payment.detected' THEN 1 END), \
         COUNT(CASE WHEN e.type = 'payment.confirmed' THEN 1 END) \
         FROM payments p JOIN events e ON e.payment_id = p.id GROUP BY p.id",
    ))
    .fetch_all(env.store.db())
    .await
    .unwrap();
    assert_eq!(per_payment.len(), total);
    for (id, detected, confirmed) in &per_payment {
        assert_eq!((*detected, *confirmed), (1, 1), "payment {id}");
    }
    // Every event reached the receiver (at least once, same webhook-id).
    let events: Vec<(String,)> =
        payhook::store::query(payhook::store::Sql::both("SELECT id FROM events"))
            .fetch_all(env.store.db())
            .await
            .unwrap();
    let received: HashSet<String> = rx
        .hits("/crash")
        .iter()
        .map(|h| h.header("webhook-id"))
        .collect();
    let missing: Vec<&String> = events
        .iter()
        .map(|(id,)| id)
        .filter(|id| !received.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events never delivered, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(events.len(), total * 2);
}

/// A confirmation redone after its first write was lost (a database copy
/// from before the scan restored, as after an OS crash with
/// `synchronous = NORMAL`) gets the same event id, so a merchant who
/// deduplicates on `webhook-id` is not credited twice.
#[tokio::test]
async fn a_redone_confirmation_gets_the_same_event_id() {
    use payhook::scanner::scan_once;
    let env = Env::new().await;
    let m = env.merchant("http://127.0.0.1:9/none").await;
    env.set_head(100).await;
    let id = env
        .detected_payment(&m.merchant.id, "REDO", "1", "1", 100)
        .await;
    env.set_head(111).await;
    let confirmed_ids = || async {
        payhook::store::events::list_for_payment(&env.store, &id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.id))
            .collect::<Vec<_>>()
    };
    if crate::support::on_postgres() {
        // Postgres: the lost write is undone by hand.
        scan_once(&env.store, &env.cfg).await.unwrap();
        let first = confirmed_ids().await;
        env.exec("DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE type = 'payment.confirmed')").await;
        env.exec("DELETE FROM events WHERE type = 'payment.confirmed'")
            .await;
        env.exec("UPDATE payments SET status = 'detected', confirmed_at = NULL")
            .await;
        scan_once(&env.store, &env.cfg).await.unwrap();
        assert_eq!(confirmed_ids().await, first);
        assert_eq!(first.len(), 2, "{first:?}");
        return;
    }
    // SQLite: a real copy of the database file from before the scan.
    let snapshot = env.dir.path().join("before-scan.db");
    env.exec_string(format!("VACUUM INTO '{}'", snapshot.display()))
        .await;
    scan_once(&env.store, &env.cfg).await.unwrap();
    let first = confirmed_ids().await;
    assert_eq!(first.len(), 2, "detected and confirmed: {first:?}");
    env.store.close().await;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", env.db_path().display()));
    }
    std::fs::copy(&snapshot, env.db_path()).unwrap();
    let store = payhook::store::Store::open(&env.cfg).await.unwrap();
    assert!(
        payhook::store::events::list_for_payment(&store, &id)
            .await
            .unwrap()
            .len()
            == 1,
        "the restored copy lost the confirmation"
    );
    scan_once(&store, &env.cfg).await.unwrap();
    let again: Vec<_> = payhook::store::events::list_for_payment(&store, &id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.id))
        .collect();
    assert_eq!(
        again, first,
        "the redone confirmation has the same event id"
    );
    store.close().await;
}
