//! The CLI surface: exit codes, --json, verify against a real delivery.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{payhook_bin, wait_for, write_config, Env, Receiver};

fn payhook(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(payhook_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_writes_a_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let out = Command::new(payhook_bin())
        .args(["--config"])
        .arg(&path)
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&path).unwrap();
    let token_line = text.lines().find(|l| l.starts_with("token = ")).unwrap();
    assert!(token_line.len() > 40);
    // It holds the token: owner-only, from the moment it exists.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "config file mode {mode:o}");
    let again = Command::new(payhook_bin())
        .args(["--config"])
        .arg(&path)
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    // The written file loads and validates (its database lands in the temp dir).
    let ok = Command::new(payhook_bin())
        .arg("--config")
        .arg(&path)
        .args(["merchant", "list"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["merchant", "--help"],
        vec!["merchant", "add", "--help"],
        vec!["payment", "detect", "--help"],
        vec!["dlq", "resubmit", "--help"],
        vec!["deliveries", "list", "--help"],
        vec!["verify", "--help"],
        vec!["endpoint", "--help"],
        vec!["endpoint", "recover", "--help"],
        vec!["serve", "--help"],
    ] {
        let out = Command::new(payhook_bin()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
    let bad = Command::new(payhook_bin())
        .args(["merchant", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn merchant_payment_and_dlq_commands_with_exit_codes() {
    let env = Env::with(|c| c.retry.max_attempts = 1).await;
    let config = write_config(env.dir.path(), &env.cfg);
    let rx = Receiver::start().await;
    rx.script("/fail", vec![500.into()]);

    let bad = payhook(
        &config,
        &[
            "merchant",
            "add",
            "--name",
            "x",
            "--webhook-url",
            "ftp://example.com",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("webhook_url"), "{}", stderr(&bad));

    let out = payhook(
        &config,
        &[
            "--json",
            "merchant",
            "add",
            "--name",
            "CLI Shop",
            "--webhook-url",
            &rx.url("/fail"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let m: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mid = m["id"].as_str().unwrap().to_string();
    assert!(m["secret"].as_str().unwrap().starts_with("whsec_"));

    let shown = payhook(&config, &["--json", "merchant", "show", &mid]);
    assert!(
        !stdout(&shown).contains("whsec_"),
        "show never prints the secret"
    );
    let missing = payhook(&config, &["merchant", "show", "mer_missing"]);
    assert_eq!(missing.status.code(), Some(2));

    let out = payhook(
        &config,
        &[
            "--json",
            "payment",
            "add",
            "--merchant-id",
            &mid,
            "--reference",
            "A-1",
            "--chain",
            "ethereum",
            "--address",
            "0xabc",
            "--expected-amount",
            "10.5",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bad_amount = payhook(
        &config,
        &[
            "payment",
            "detect",
            &pid,
            "--tx-hash",
            "0x1",
            "--amount",
            "1,5",
            "--block-number",
            "7",
        ],
    );
    assert_eq!(bad_amount.status.code(), Some(2));
    assert!(stderr(&bad_amount).contains("amount"));
    assert!(payhook(&config, &["chain", "head", "ethereum", "7"])
        .status
        .success());
    assert!(payhook(
        &config,
        &[
            "payment",
            "detect",
            &pid,
            "--tx-hash",
            "0x1",
            "--amount",
            "10.5",
            "--block-number",
            "7"
        ]
    )
    .status
    .success());
    assert!(payhook(&config, &["chain", "head", "ethereum", "18"])
        .status
        .success());
    let scan = payhook(&config, &["--json", "scan"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&scan)).unwrap();
    assert_eq!(report["confirmed"], 1);

    let pipeline = env.start();
    wait_for(Duration::from_secs(20), "two dead letters", || async {
        (env.count("SELECT COUNT(*) FROM dead_letters").await == 2).then_some(())
    })
    .await;
    pipeline.stop().await.unwrap();

    let list = payhook(&config, &["--json", "dlq", "list", "--reason", "exhausted"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(rows.len(), 2);
    let bad_reason = payhook(&config, &["dlq", "list", "--reason", "bored"]);
    assert_eq!(bad_reason.status.code(), Some(2));
    let id = rows[0]["id"].as_str().unwrap();
    assert!(payhook(&config, &["dlq", "resubmit", id]).status.success());
    let twice = payhook(&config, &["dlq", "resubmit", id]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(stderr(&twice).contains("already resubmitted"));

    let show = payhook(
        &config,
        &[
            "--json",
            "deliveries",
            "show",
            rows[1]["delivery_id"].as_str().unwrap(),
        ],
    );
    let d: serde_json::Value = serde_json::from_str(&stdout(&show)).unwrap();
    assert_eq!(d["delivery_attempts"][0]["status_code"], 500);

    let by = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = payhook(&config, &[&["--json", "deliveries", "list"], args].concat());
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    // Two events of the payment died once each; one was resubmitted.
    assert_eq!(by(&["--payment-id", &pid]).len(), 3);
    assert_eq!(by(&["--payment-id", &pid, "--status", "dead"]).len(), 2);
    let confirmed = by(&["--status", "dead", "--event-type", "payment.confirmed"]);
    assert_eq!(confirmed.len(), 1);
    assert!(by(&["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(by(&["--since", "2000-01-01T00:00:00Z"]).len(), 3);
    let bad_type = payhook(
        &config,
        &["deliveries", "list", "--event-type", "payment.lost"],
    );
    assert_eq!(bad_type.status.code(), Some(2));
    assert!(stderr(&bad_type).contains("payment.confirmed"));
}

#[tokio::test]
async fn verify_command_checks_a_real_delivery() {
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = env.merchant(&rx.url("/v")).await;
    payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    let hit = wait_for(Duration::from_secs(20), "a delivery", || {
        let rx = rx.clone();
        async move { rx.hits("/v").first().cloned() }
    })
    .await;
    pipeline.stop().await.unwrap();
    let body = env.dir.path().join("body.json");
    std::fs::write(&body, &hit.body).unwrap();
    let verify = |secret: &str| {
        Command::new(payhook_bin())
            .args(["verify", "--secret", secret, "--body-file"])
            .arg(&body)
            .args(["-H", &format!("webhook-id: {}", hit.header("webhook-id"))])
            .args([
                "-H",
                &format!("webhook-timestamp: {}", hit.header("webhook-timestamp")),
            ])
            .args([
                "-H",
                &format!("webhook-signature: {}", hit.header("webhook-signature")),
            ])
            .output()
            .unwrap()
    };
    let ok = verify(m.secret.expose());
    assert!(ok.status.success(), "{}", stderr(&ok));
    let wrong = verify(payhook::ids::new_secret().expose());
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("signature invalid"));
}

#[test]
fn verify_of_a_hex_signature_warns_that_it_cannot_detect_replays() {
    use hmac::{Hmac, Mac};
    let body = r#"{"id":"evt_1","type":"webhook.test"}"#;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hexsecret").unwrap();
    mac.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let out = Command::new(payhook_bin())
        .args([
            "verify",
            "--signature-scheme",
            "hex",
            "--secret",
            "hexsecret",
        ])
        .args(["--signature", &sig, "--body", body])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("signature valid") && said.contains("cannot detect replays"),
        "{said}"
    );
}

#[test]
fn cli_changes_are_audited_and_listed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(crate::support::Env::new());
    let config = crate::support::write_config(env.dir.path(), &env.cfg);
    let m = rt.block_on(env.merchant("https://example.com/hook"));
    let run = |args: &[&str]| {
        Command::new(payhook_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["merchant", "enable", m.merchant.id.as_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["--json", "audit", "list", "--action", "merchant.enable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["object_id"], m.merchant.id.as_str());
    assert_eq!(rows[0]["actor"], "admin");
    let bad = run(&["audit", "list", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// `payhook endpoint …` end to end on one database: add (secret shown
/// once), list, update, reveal (audited), disable/enable, health, recover,
/// delete; bad input exits 2 naming the flag or field.
#[test]
fn endpoint_commands_manage_a_merchants_endpoints() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(crate::support::Env::new());
    let config = write_config(env.dir.path(), &env.cfg);
    let m = rt.block_on(env.merchant("https://example.com/primary"));
    let mid = m.merchant.id.as_str();
    let json = |o: &Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", stderr(o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let added = json(&payhook(
        &config,
        &[
            "--json",
            "endpoint",
            "add",
            "--merchant-id",
            mid,
            "--url",
            "https://example.com/second",
            "--description",
            "warehouse",
            "--event-type",
            "payment.confirmed,payment.expired",
        ],
    ));
    let ep = added["id"].as_str().unwrap().to_string();
    let secret = added["secret"].as_str().unwrap().to_string();
    assert!(ep.starts_with("ep_") && secret.starts_with("whsec_"));
    assert_eq!(
        added["event_types"],
        serde_json::json!(["payment.confirmed", "payment.expired"])
    );
    let listed = json(&payhook(
        &config,
        &["--json", "endpoint", "list", "--merchant-id", mid],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!stdout(&payhook(
        &config,
        &["endpoint", "list", "--merchant-id", mid]
    ))
    .contains(&secret));
    let updated = json(&payhook(
        &config,
        &[
            "--json",
            "endpoint",
            "update",
            &ep,
            "--event-type",
            "all",
            "--description",
            "",
        ],
    ));
    assert!(
        updated["event_types"].is_null() && updated["description"].is_null(),
        "{updated}"
    );
    let shown = payhook(&config, &["endpoint", "reveal-secret", &ep]);
    assert_eq!(stdout(&shown).trim(), secret);
    let disabled = json(&payhook(&config, &["--json", "endpoint", "disable", &ep]));
    assert_eq!(disabled["status"], "disabled");
    let enabled = json(&payhook(&config, &["--json", "endpoint", "enable", &ep]));
    assert_eq!(enabled["status"], "active");
    let health = json(&payhook(&config, &["--json", "endpoint", "health", &ep]));
    assert_eq!(
        (health["circuit"].as_str(), health["attempts_24h"].as_i64()),
        (Some("closed"), Some(0))
    );
    let recovered = json(&payhook(
        &config,
        &[
            "--json",
            "endpoint",
            "recover",
            &ep,
            "--since",
            "2026-01-01T00:00:00Z",
        ],
    ));
    assert_eq!(recovered["count"], 0);
    let audit = json(&payhook(
        &config,
        &["--json", "audit", "list", "--object-id", &ep],
    ));
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "endpoint.create",
        "endpoint.update",
        "endpoint.reveal_secret",
        "endpoint.disable",
        "endpoint.enable",
        "endpoint.recover",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(!audit.to_string().contains(&secret));
    let deleted = json(&payhook(&config, &["--json", "endpoint", "delete", &ep]));
    assert_eq!(deleted["deleted"], true);
    let gone = payhook(&config, &["endpoint", "show", &ep]);
    assert_eq!(gone.status.code(), Some(2), "{}", stderr(&gone));
    assert!(stderr(&gone).contains(&ep));
    // Bad input: exit 2, the field named.
    let bad = payhook(
        &config,
        &[
            "endpoint",
            "add",
            "--merchant-id",
            mid,
            "--url",
            "https://example.com/x",
            "--rate-limit-per-sec",
            "0",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("rate_limit_per_sec"),
        "{}",
        stderr(&bad)
    );
    let bad = payhook(
        &config,
        &[
            "endpoint",
            "recover",
            m.merchant.endpoint_id.as_ref().unwrap().as_str(),
            "--since",
            "last week",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
}
