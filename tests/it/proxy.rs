//! Egress proxies: the environment's proxy variables are ignored, and
//! `delivery.proxy` is asked to CONNECT to the vetted address, never to a
//! name it would resolve itself.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use payhook::ops::merchants;
use payhook::pipeline::{Parts, Pipeline};

use crate::support::{payhook_bin, wait_for, write_config, Env, Receiver};

/// A CONNECT proxy on 127.0.0.1: records each request line it gets and
/// tunnels CONNECTs; anything else is answered 502.
async fn fake_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let line = text.lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(line.clone());
                let mut parts = line.split_whitespace();
                let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn proxy_variables_in_the_environment_are_ignored() {
    let (proxy, seen) = fake_proxy().await;
    let env = Env::new().await;
    let rx = Receiver::start().await;
    let m = env.merchant(&rx.url("/direct")).await;
    merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let config = write_config(env.dir.path(), &env.cfg);
    let proxy_url = format!("http://{proxy}");
    let mut child = Command::new(payhook_bin())
        .arg("--config")
        .arg(&config)
        .arg("worker")
        .env("HTTP_PROXY", &proxy_url)
        .env("HTTPS_PROXY", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("https_proxy", &proxy_url)
        .env("all_proxy", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let hit = wait_for(Duration::from_secs(15), "the direct delivery", || {
        let rx = rx.clone();
        async move { rx.hits("/direct").first().cloned() }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(hit.header("webhook-signature").starts_with("v1,"));
    assert!(
        seen.lock().unwrap().is_empty(),
        "the proxy of the environment was used: {:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn delivery_proxy_is_asked_to_connect_to_the_vetted_address_only() {
    let (proxy, seen) = fake_proxy().await;
    let env = Env::with(|c| c.delivery.proxy = Some(format!("http://{proxy}"))).await;
    let rx = Receiver::start().await;
    // A host name: the proxy must be given the address payhook vetted.
    let url = format!("http://localhost:{}/via-proxy", rx.addr.port());
    let m = env.merchant(&url).await;
    merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = env.start();
    let hit = wait_for(Duration::from_secs(15), "the proxied delivery", || {
        let rx = rx.clone();
        async move { rx.hits("/via-proxy").first().cloned() }
    })
    .await;
    pipeline.stop().await.unwrap();
    standardwebhooks::Webhook::new(m.secret.expose())
        .unwrap()
        .verify(&hit.body, &hit.headers)
        .unwrap();
    assert_eq!(hit.header("host"), format!("localhost:{}", rx.addr.port()));
    let lines = seen.lock().unwrap().clone();
    assert!(!lines.is_empty(), "the proxy was not used");
    for line in &lines {
        assert!(
            line.starts_with("CONNECT 127.0.0.1:") || line.starts_with("CONNECT [::1]:"),
            "the proxy was asked for {line:?}"
        );
    }

    // A target the policy refuses never reaches the proxy.
    seen.lock().unwrap().clear();
    let mut strict = env.cfg.clone();
    strict.delivery.allow_private_targets = false;
    let (_, delivery) = merchants::send_test(&env.store, &m.merchant.id)
        .await
        .unwrap();
    let pipeline = Pipeline::start(
        &env.store,
        &strict,
        Parts {
            scanner: false,
            sender: true,
        },
    )
    .unwrap();
    let delivery = delivery.unwrap();
    let d = wait_for(Duration::from_secs(15), "the refused delivery", || {
        let (store, id) = (env.store.clone(), delivery.clone());
        async move {
            let d = payhook::store::deliveries::get(&store, &id).await.unwrap();
            (d.status.as_str() == "dead").then_some(d)
        }
    })
    .await;
    pipeline.stop().await.unwrap();
    assert!(d
        .last_error
        .unwrap_or_default()
        .contains("not a public address"));
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
}
