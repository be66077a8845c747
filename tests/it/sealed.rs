//! Secrets at rest: signing secrets and extra header values are stored
//! sealed under `secrets.key`; a key rotation keeps old rows readable and
//! re-seals them; database files are owner-only.

use std::time::Duration;

use payhook::ids::Secret;
use payhook::ops::merchants::{self, NewMerchant};
use payhook::sealing::KeyRing;
use payhook::store::Store;

use crate::support::{on_postgres, wait_for, Env, Receiver};

const HEADER_VALUE: &str = "apikey-VALUE-9d3e1c77";

/// Everything the database holds, as bytes: the SQLite files, or (Postgres)
/// the merchants' secret columns as stored.
async fn raw_database(env: &Env) -> Vec<u8> {
    if on_postgres() {
        let rows: Vec<(String, String, Option<String>)> = payhook::store::query(
            payhook::store::Sql::both("SELECT secret, headers, previous_secret FROM endpoints"),
        )
        .fetch_all(env.store.db())
        .await
        .unwrap();
        return format!("{rows:?}").into_bytes();
    }
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", env.db_path().display());
        bytes.extend(std::fs::read(&path).unwrap_or_default());
    }
    bytes
}

async fn merchant_with_header(env: &Env, rx: &Receiver) -> merchants::WithSecret {
    merchants::create(
        &env.store,
        &env.cfg,
        NewMerchant {
            name: "Sealed".into(),
            webhook_url: rx.url("/sealed"),
            headers: Some([("API-Key".to_string(), HEADER_VALUE.to_string())].into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn delivered_and_verified(env: &Env, rx: &Receiver, secret: &str) {
    let hit = wait_for(Duration::from_secs(10), "a delivery", || {
        let rx = rx.clone();
        async move { rx.hits("/sealed").pop() }
    })
    .await;
    assert_eq!(hit.header("api-key"), HEADER_VALUE);
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&hit.body, &hit.headers)
        .expect("signed with the merchant's secret");
    let _ = env;
}

#[tokio::test]
async fn secrets_and_header_values_never_reach_the_database_in_the_clear() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = merchant_with_header(&env, &rx).await;
    let rotated = merchants::rotate_secret(&env.store, &m.merchant.id, Duration::from_secs(3600))
        .await
        .unwrap();
    // Shown once, stored sealed: neither the secrets (nor their base64
    // parts) nor the header value are in the database's bytes.
    let raw = raw_database(&env).await;
    for secret in [m.secret.expose(), rotated.secret.expose()] {
        assert!(!contains(&raw, secret), "a secret is stored in the clear");
        assert!(!contains(&raw, secret.trim_start_matches("whsec_")));
    }
    assert!(
        !contains(&raw, HEADER_VALUE),
        "a header value is stored in the clear"
    );
    assert!(contains(&raw, "sealed:v1:"));
    // The sender opens them: the delivery carries the header and verifies.
    merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    delivered_and_verified(&env, &rx, rotated.secret.expose()).await;
    pipeline.stop().await.unwrap();
    // The merchant is shown with its header names only.
    let shown = payhook::store::merchants::get(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let json = serde_json::to_string(&shown).unwrap();
    assert!(json.contains("\"headers\":[\"API-Key\"]"), "{json}");
    assert!(!json.contains(HEADER_VALUE) && !json.contains("sealed:v1"));
    if !on_postgres() {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", env.db_path().display());
            if let Ok(meta) = std::fs::metadata(&path) {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{path} has mode {mode:o}");
            }
        }
    }
}

#[tokio::test]
async fn a_key_rotation_keeps_old_rows_readable_and_reseals_them() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = merchant_with_header(&env, &rx).await;
    let old_key = env.cfg.secrets.key.clone().unwrap();
    let mut cfg = env.cfg.clone();
    cfg.secrets.key = Some(Secret::new(KeyRing::generate_key()));
    cfg.secrets.previous_keys = vec![old_key];
    let store = Store::open(&cfg).await.unwrap();
    let new_id = store.keys().unwrap().current_id().to_string();
    // Before re-sealing, the old key still opens the row: deliveries verify.
    // (Opening the store sealed nothing new: the row was sealed already.)
    merchants::send_test(&store, &m.merchant.id).await.unwrap();
    let pipeline = payhook::pipeline::Pipeline::start(
        &store,
        &cfg,
        payhook::pipeline::Parts {
            scanner: false,
            sender: true,
        },
    )
    .unwrap();
    delivered_and_verified(&env, &rx, m.secret.expose()).await;
    pipeline.stop().await.unwrap();
    let which = payhook::store::endpoints::Reseal::NotUnderCurrentKey;
    let resealed = payhook::store::endpoints::reseal(&store, which, payhook::time::now_ms())
        .await
        .unwrap();
    assert_eq!(resealed, 1);
    let raw = raw_database(&env).await;
    assert!(contains(&raw, &format!("sealed:v1:{new_id}:")));
    store.close().await;
    // Without the old key the rows still open: they are under the new one.
    cfg.secrets.previous_keys.clear();
    let store = Store::open(&cfg).await.unwrap();
    let shown = payhook::store::merchants::get(&store, &m.merchant.id)
        .await
        .unwrap();
    assert_eq!(shown.header_names, ["API-Key"]);
    store.close().await;
}

#[tokio::test]
async fn rows_written_before_sealing_are_sealed_when_the_store_opens() {
    let env = Env::new().await;
    let m = env.merchant("https://example.com/hook").await;
    // A row as an older release wrote it (moved to `endpoints` by the
    // migration as it was): the secret in the clear.
    env.exec_string(format!(
        "UPDATE endpoints SET secret = '{}', headers = '{{}}'",
        m.secret.expose()
    ))
    .await;
    assert!(contains(&raw_database(&env).await, m.secret.expose()) || on_postgres());
    let store = Store::open(&env.cfg).await.unwrap();
    let stored: String =
        payhook::store::query(payhook::store::Sql::both("SELECT secret FROM endpoints"))
            .scalar(store.db())
            .await
            .unwrap();
    assert!(stored.starts_with("sealed:v1:"), "still in the clear");
    store.close().await;
}
