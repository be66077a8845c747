//! The web console in a real browser (headless Chromium over WebDriver)
//! against a real `payhook serve` and real receivers: sign in, find a dead
//! delivery through the log filters, read its attempts, resubmit it; bulk
//! resubmit with its count shown first; endpoint actions; a merchant key
//! confined to its merchant; hostile response bodies shown as text; forms
//! without their token refused. Screenshots of each page at 1280 and 390
//! pixels go to `target/screenshots/` for a person to look at.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::browser::Browser;
use crate::support::{payhook_bin, wait_for, write_config, Env, Receiver, Reply};

const HOSTILE: &str = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";

/// `payhook serve` on a free port, killed on drop.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    async fn start(env: &Env) -> Serve {
        let config = write_config(env.dir.path(), &env.cfg);
        let child = Command::new(payhook_bin())
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.dir.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap();
        let base = format!("http://{}", env.cfg.admin.listen);
        let url = format!("{base}/healthz");
        wait_for(Duration::from_secs(30), "payhook serve to answer", || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
        Serve { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_listen() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn env_for_console() -> Env {
    let listen = free_listen();
    Env::with(move |c| {
        c.admin.listen = listen;
        c.retry.max_attempts = 1;
    })
    .await
}

async fn sign_in(b: &Browser, serve: &Serve, token: &str) {
    b.goto(&serve.url("/console")).await;
    b.wait_for("#token").await;
    assert!(b.current_url().await.path().ends_with("/console/login"));
    b.fill("#token", token).await;
    b.click("form.signin button").await;
    b.wait_for("header nav").await;
}

async fn dead_count(env: &Env) -> i64 {
    env.count("SELECT COUNT(*) FROM deliveries WHERE status = 'dead'")
        .await
}

async fn shoot(b: &Browser, name: &str) {
    for w in [1280, 390] {
        b.screenshot(name, w).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_finds_a_dead_delivery_reads_it_and_resubmits_it() {
    let env = env_for_console().await;
    let rx = Receiver::start().await;
    rx.script(
        "/shop",
        vec![
            Reply {
                status: 500,
                headers: vec![],
                body: Some(HOSTILE),
            },
            Reply::from(200),
        ],
    );
    rx.script(
        "/bulk",
        vec![503.into(); 3]
            .into_iter()
            .chain([Reply::from(200)])
            .collect(),
    );
    let m = env.merchant(&rx.url("/shop")).await;
    let ep = m.merchant.endpoint_id.clone().unwrap();
    let bulk = payhook::ops::endpoints::create(
        &env.store,
        &env.cfg,
        &m.merchant.id,
        payhook::ops::endpoints::NewEndpoint {
            url: rx.url("/bulk"),
            description: Some("bulk <b>target</b>".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    env.set_head(100).await;
    env.detected_payment(&m.merchant.id, "ORDER-<7>", "12.50", "12.50", 100)
        .await;
    let serve = Serve::start(&env).await;
    // The payment's detected event: /shop answers 500 (dead at once), /bulk 503.
    wait_for(Duration::from_secs(30), "two dead deliveries", || {
        let env = &env;
        async move { (dead_count(env).await == 2).then_some(()) }
    })
    .await;
    let first = rx.hits("/shop")[0].clone();

    let b = Browser::start().await;
    sign_in(&b, &serve, env.cfg.admin.token.as_ref().unwrap().expose()).await;
    assert!(b.current_url().await.path().ends_with("/console/overview"));
    let cookie = b.cookie("payhook_session").await.expect("a session cookie");
    assert!(cookie.http_only().unwrap_or(false), "HttpOnly");
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let page = b.execute("return document.documentElement.outerHTML").await;
    assert!(!page
        .as_str()
        .unwrap()
        .contains(env.cfg.admin.token.as_ref().unwrap().expose()));
    let overview = b.text("main").await;
    assert!(
        overview.contains("Queue and dead letters over time"),
        "{overview}"
    );
    shoot(&b, "overview").await;

    // The log, filtered to dead deliveries of the primary endpoint.
    b.goto(&serve.url("/console/deliveries")).await;
    b.execute("document.querySelector('select[name=status]').value = 'dead'; return null")
        .await;
    b.fill("input[name=endpoint_id]", ep.as_str()).await;
    b.click("#filter").await;
    wait_for(Duration::from_secs(15), "the filtered log", || {
        let b = &b;
        async move {
            let url = b.current_url().await;
            url.query()
                .is_some_and(|q| q.contains("status=dead"))
                .then_some(())
        }
    })
    .await;
    b.wait_for("#deliveries tbody tr").await;
    let rows = b
        .execute("return document.querySelectorAll('#deliveries tbody tr').length")
        .await;
    assert_eq!(rows, 1, "one dead delivery to the primary endpoint");
    shoot(&b, "deliveries").await;
    b.click("#deliveries tbody a").await;
    b.wait_for("section.attempt").await;
    let attempt = b.text("section.attempt").await;
    assert!(attempt.contains("500"), "{attempt}");
    // The receiver's body is shown as text, and nothing in it ran.
    assert!(b
        .text("pre.response")
        .await
        .contains("<script>window.pwned=1</script>"));
    assert_eq!(b.execute("return window.pwned === undefined").await, true);
    assert!(b.text("#body").await.contains("ORDER-<7>"));
    shoot(&b, "delivery").await;
    b.click("#resubmit").await;
    b.wait_for("#new-delivery").await;
    let again = wait_for(Duration::from_secs(20), "the resubmission", || {
        let rx = rx.clone();
        async move { (rx.hits("/shop").len() == 2).then(|| rx.hits("/shop")[1].clone()) }
    })
    .await;
    assert_eq!(again.header("webhook-id"), first.header("webhook-id"));
    standardwebhooks::Webhook::new(m.secret.expose())
        .unwrap()
        .verify(&again.body, &again.headers)
        .expect("the resubmission verifies");

    // Endpoint actions: a test event, a rotation.
    b.goto(&serve.url(&format!("/console/endpoints/{ep}")))
        .await;
    b.wait_for("#send-test").await;
    shoot(&b, "endpoint").await;
    b.click("#send-test").await;
    b.wait_for(".notice").await;
    wait_for(Duration::from_secs(20), "the test event", || {
        let rx = rx.clone();
        async move {
            rx.hits("/shop")
                .iter()
                .any(|h| h.json()["type"] == "webhook.test")
                .then_some(())
        }
    })
    .await;
    b.goto(&serve.url(&format!("/console/endpoints/{ep}")))
        .await;
    b.click("#rotate").await;
    let rotated = {
        b.wait_for("#secret").await;
        b.text("#secret").await
    };
    assert!(
        rotated.starts_with("whsec_") && rotated != m.secret.expose(),
        "{rotated}"
    );

    // Bulk resubmission: three dead letters of /bulk, counted first.
    for _ in 0..2 {
        payhook::ops::endpoints::send_test(
            &env.store,
            &bulk.endpoint.id,
            payhook::ops::endpoints::AuditAs::Endpoint,
        )
        .await
        .unwrap();
    }
    wait_for(Duration::from_secs(30), "three dead at /bulk", || {
        let env = &env;
        async move { (dead_count(env).await == 4).then_some(()) }
    })
    .await;
    b.goto(&serve.url(&format!("/console/dlq?endpoint_id={}", bulk.endpoint.id)))
        .await;
    b.wait_for("#dead-letters").await;
    shoot(&b, "dlq").await;
    b.click("#bulk").await;
    assert_eq!(
        {
            b.wait_for("#preview-count").await;
            b.text("#preview-count").await
        },
        "3"
    );
    shoot(&b, "dlq-preview").await;
    b.click("#confirm").await;
    assert_eq!(
        {
            b.wait_for("#resubmitted-count").await;
            b.text("#resubmitted-count").await
        },
        "3"
    );
    wait_for(
        Duration::from_secs(20),
        "three redeliveries to /bulk",
        || {
            let rx = rx.clone();
            async move { (rx.hits("/bulk").len() == 6).then_some(()) }
        },
    )
    .await;

    // A form posted without its token (or with a wrong one) is refused.
    let client = reqwest::Client::new();
    let session = format!("payhook_session={}", cookie.value());
    let url = serve.url(&format!("/console/endpoints/{ep}/test"));
    for body in ["", "csrf=forged"] {
        let r = client
            .post(&url)
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{body:?}: {}", r.status());
    }
    let tests = rx
        .hits("/shop")
        .iter()
        .filter(|h| h.json()["type"] == "webhook.test")
        .count();
    assert_eq!(tests, 1, "the refused forms sent nothing");

    for (name, path) in [
        ("merchants", "/console/merchants".to_string()),
        ("merchant", format!("/console/merchants/{}", m.merchant.id)),
        ("payments", "/console/payments".to_string()),
        ("audit", "/console/audit".to_string()),
    ] {
        b.goto(&serve.url(&path)).await;
        b.wait_for("main h1").await;
        shoot(&b, name).await;
    }
    b.click("#audit tbody tr").await;
    let audit = b.text("#audit").await;
    assert!(audit.contains("endpoint.rotate_secret") && audit.contains("dead_letter.resubmit"));
    b.goto(&serve.url("/console/payments")).await;
    b.click("table tbody a").await;
    b.wait_for("ol.timeline").await;
    assert!(b.text("ol.timeline").await.contains("payment.detected"));
    shoot(&b, "payment").await;
    // Live: the overview's dead-letter count moves without a reload.
    b.goto(&serve.url("/console/overview")).await;
    b.wait_for(".card [data-live=dlq_open]").await;
    let read = "return document.querySelector('.card [data-live=dlq_open]').textContent";
    let before = b.execute(read).await;
    b.execute("window.notReloaded = true; return null").await;
    rx.script("/again", vec![500.into()]);
    let again_ep = payhook::ops::endpoints::create(
        &env.store,
        &env.cfg,
        &m.merchant.id,
        payhook::ops::endpoints::NewEndpoint {
            url: rx.url("/again"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    payhook::ops::endpoints::send_test(
        &env.store,
        &again_ep.endpoint.id,
        payhook::ops::endpoints::AuditAs::Endpoint,
    )
    .await
    .unwrap();
    wait_for(
        Duration::from_secs(20),
        "the count to move on the page",
        || {
            let (b, before) = (&b, before.clone());
            async move { (b.execute(read).await != before).then_some(()) }
        },
    )
    .await;
    assert_eq!(b.execute("return window.notReloaded === true").await, true);
    // Sign out: the session is gone.
    b.goto(&serve.url("/console/overview")).await;
    b.click("form.signout button").await;
    b.wait_for("#token").await;
    b.goto(&serve.url("/console/overview")).await;
    b.wait_for("#token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_key_sees_its_own_merchant_only() {
    let env = env_for_console().await;
    let rx = Receiver::start().await;
    let a = env.merchant(&rx.url("/a")).await;
    let b_m = env.merchant(&rx.url("/b")).await;
    let serve = Serve::start(&env).await;
    for m in [&a, &b_m] {
        payhook::ops::merchants::send_test(&env.store, &m.merchant.id)
            .await
            .unwrap();
    }
    wait_for(Duration::from_secs(20), "both delivered", || {
        let rx = rx.clone();
        async move { (rx.all_hits().len() == 2).then_some(()) }
    })
    .await;
    let b_delivery: String = payhook::store::query(payhook::store::Sql::both(
        "SELECT id FROM deliveries WHERE merchant_id = $1",
    ))
    .bind(&b_m.merchant.id)
    .scalar(env.store.db())
    .await
    .unwrap();
    let key = payhook::ops::api_keys::create(&env.store, &a.merchant.id, "console")
        .await
        .unwrap();
    let br = Browser::start().await;
    sign_in(&br, &serve, key.secret.expose()).await;
    // Lists hold A only; B's objects are not found even by URL.
    br.goto(&serve.url("/console/deliveries")).await;
    br.wait_for("#deliveries").await;
    let html = br.execute("return document.body.innerText").await;
    let text = html.as_str().unwrap();
    assert!(
        !text.contains(b_m.merchant.id.as_str()) && !text.contains(&b_delivery),
        "{text}"
    );
    assert!(
        text.contains(a.merchant.id.as_str()) || text.contains("dlv_"),
        "{text}"
    );
    shoot(&br, "merchant-deliveries").await;
    for path in [
        format!("/console/deliveries/{b_delivery}"),
        format!(
            "/console/endpoints/{}",
            b_m.merchant.endpoint_id.as_ref().unwrap()
        ),
        format!("/console/merchants/{}", b_m.merchant.id),
        format!("/console/deliveries?merchant_id={}", b_m.merchant.id),
        "/console/audit".to_string(),
    ] {
        br.goto(&serve.url(&path)).await;
        let body = br.execute("return document.body.innerText").await;
        let body = body.as_str().unwrap();
        assert!(
            body.contains("404") || body.contains("403") || body.contains("No delivery matches"),
            "{path}: {body}"
        );
        assert!(
            !body.contains(&b_delivery) || path.contains(&b_delivery) && body.contains("404"),
            "{path}"
        );
    }
    br.goto(&serve.url("/console/merchants")).await;
    br.wait_for("main h1").await;
    assert!(br
        .current_url()
        .await
        .path()
        .ends_with(a.merchant.id.as_str()));
    // A revoked key's session ends at once.
    payhook::ops::api_keys::revoke(&env.store, key.key.id.as_str())
        .await
        .unwrap();
    br.goto(&serve.url("/console/overview")).await;
    br.wait_for("#token").await;
}

/// Signs in to an in-process admin listener with `token`; returns its base
/// URL and the session cookie.
async fn session_on(
    env: &Env,
    token: &str,
) -> (String, String, tokio_util::sync::CancellationToken) {
    let listener = payhook::admin::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = payhook::admin::AppState {
        store: env.store.clone(),
        cfg: std::sync::Arc::new(env.cfg.clone()),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(payhook::web::serve(
        listener,
        state,
        token.into(),
        stop.clone(),
    ));
    let client = no_redirects();
    let form = client
        .get(format!("{base}/console/login"))
        .send()
        .await
        .unwrap();
    let login = cookie_of(&form, "payhook_login").unwrap();
    let csrf = login.split_once('=').unwrap().1.to_string();
    let signed = client
        .post(format!("{base}/console/login"))
        .header("cookie", &login)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303, "signed in");
    (base, cookie_of(&signed, "payhook_session").unwrap(), stop)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie_of(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// Without a browser: a new admin token ends the old token's sessions; a
/// form posted from another origin is refused; unknown console paths are
/// an HTML 404 under the console's headers; the sign-in form refuses a
/// post without its double-submit token.
#[tokio::test]
async fn sessions_follow_the_admin_token_and_forms_their_origin() {
    let env = Env::new().await;
    let client = no_redirects();
    let old_token = "old-admin-token-0123456789-abcdefghijklmn";
    let (base, session, stop_old) = session_on(&env, old_token).await;
    let page = client
        .get(format!("{base}/console/overview"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    // Another origin posting a form with the right cookie is refused.
    let forged = client
        .post(format!("{base}/console/logout"))
        .header("cookie", &session)
        .header("origin", "http://127.0.0.1:1")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // An unknown console page: HTML 404 with the console's headers.
    let missing = client
        .get(format!("{base}/console/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("content-security-policy"));
    assert!(missing.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // Sign-in without the form's token.
    let blind = client
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={old_token}&csrf=guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(blind.status(), 403);
    stop_old.cancel();
    // The operator changes admin.token: the old session no longer opens pages.
    let (base_new, _, stop_new) =
        session_on(&env, "new-admin-token-0123456789-abcdefghijklmn").await;
    let stale = client
        .get(format!("{base_new}/console/overview"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 303);
    assert_eq!(stale.headers()["location"], "/console/login");
    stop_new.cancel();
}
