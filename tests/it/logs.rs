//! Secrets never reach logs: a real `payhook serve` at trace level, pretty and
//! JSON, delivers to a merchant with an extra secret header; its whole log
//! output is searched for the secret, the signature and the header value.

use std::process::{Command, Stdio};
use std::time::Duration;

use payhook::config::LogFormat;
use payhook::ops::merchants::{self, NewMerchant};

use crate::support::{payhook_bin, wait_for, write_config, Env, Receiver};

async fn run_at_trace(format: LogFormat) {
    let env = Env::with(|c| c.log.format = format).await;
    let rx = Receiver::start().await;
    let m = merchants::create(
        &env.store,
        &env.cfg,
        NewMerchant {
            name: "Secretive".into(),
            webhook_url: rx.url("/s"),
            headers: Some([("API-Key".to_string(), "apikey-VALUE-4f9c2e".to_string())].into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let hex = merchants::create(
        &env.store,
        &env.cfg,
        NewMerchant {
            name: "Hex".into(),
            webhook_url: rx.url("/h"),
            signature_scheme: Some("hex".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    merchants::send_test(&env.store, &hex.merchant.id)
        .await
        .unwrap();
    let mut cfg = env.cfg.clone();
    cfg.log.format = format;
    let config = write_config(env.dir.path(), &cfg);
    let log_path = env.dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(payhook_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "trace")
        .env(
            "PAYHOOK__LOG__FORMAT",
            if format == LogFormat::Json {
                "json"
            } else {
                "pretty"
            },
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let hits = wait_for(Duration::from_secs(20), "both deliveries", || {
        let rx = rx.clone();
        async move { (rx.all_hits().len() >= 2).then(|| rx.all_hits()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let output = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        output.len() > 10_000,
        "trace logging was on ({} bytes)",
        output.len()
    );
    assert!(
        output.contains("delivered") && output.contains(&hits[0].header("webhook-id")),
        "attempt logs are present"
    );
    let secret_b64 = m.secret.expose().trim_start_matches("whsec_");
    let mut forbidden = vec![
        m.secret.expose().to_string(),
        secret_b64.to_string(),
        hex.secret.expose().to_string(),
        "apikey-VALUE-4f9c2e".to_string(),
    ];
    for h in &hits {
        for name in ["webhook-signature", "x-payhook-signature"] {
            let v = h.header(name);
            if !v.is_empty() {
                forbidden.push(v.clone());
                // The bare signature without its "v1," / "sha256=" prefix too.
                forbidden.push(
                    v.split_once([',', '='])
                        .map(|(_, s)| s.to_string())
                        .unwrap_or(v),
                );
            }
        }
    }
    for f in &forbidden {
        assert!(
            !output.contains(f.as_str()),
            "{format:?} log output contains a secret value"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_contain_secrets_or_signatures_pretty() {
    run_at_trace(LogFormat::Pretty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_contain_secrets_or_signatures_json() {
    run_at_trace(LogFormat::Json).await;
}

/// Log lines name an endpoint by its origin only: a path can carry a token.
#[tokio::test]
async fn log_lines_name_an_endpoint_by_its_origin_only() {
    let env = Env::with(|c| {
        c.circuit.failure_threshold = 2;
        c.retry.max_attempts = 5;
    })
    .await;
    let rx = Receiver::start().await;
    rx.script("/hooks/PATHTOKEN-1d9c", vec![500.into()]);
    let m = env.merchant(&rx.url("/hooks/PATHTOKEN-1d9c")).await;
    for _ in 0..3 {
        merchants::send_test(&env.store, &m.merchant.id)
            .await
            .unwrap();
    }
    let config = write_config(env.dir.path(), &env.cfg);
    let log_path = env.dir.path().join("serve.log");
    let mut child = Command::new(payhook_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "payhook=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let output = wait_for(Duration::from_secs(20), "the circuit to open", || {
        let path = log_path.clone();
        async move {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            text.contains("circuit opened").then_some(text)
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        output.contains(&format!("127.0.0.1:{}", rx.addr.port())),
        "the origin is named:\n{output}"
    );
    assert!(
        !output.contains("PATHTOKEN"),
        "a log line shows the endpoint's path:\n{output}"
    );
}
