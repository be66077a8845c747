//! A real headless Chromium for the console tests, driven over WebDriver
//! (fantoccini) through Debian's chromedriver. Owns: starting chromedriver on
//! a free loopback port with a throwaway profile, small page helpers,
//! screenshots under `target/screenshots/`, and cleanup on drop (also when a
//! test panics). Not: the console's pages, nor what a test asserts on them.
//!
//! Chromium and chromedriver come from Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/test-tools.sh`. When either is
//! missing the tests fail (never skip) and say how to install them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long `wait_for` waits for an element, and chromedriver to listen: a
/// loaded 2-core machine running the rest of the suite is the worst case.
const WAIT: Duration = Duration::from_secs(15);
/// Chromium's own start, inside the new-session request.
const SESSION_START: Duration = Duration::from_secs(60);
/// Screenshot height: the window grows to the page's height, up to this.
const MIN_HEIGHT: u32 = 800;
const MAX_HEIGHT: u32 = 4000;

/// Without the networking flags Chromium hangs on this closed network trying
/// to reach Google's services; --no-sandbox because the tests run as root.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
];

pub struct Browser {
    /// `None` only while starting and after drop began.
    client: Option<Client>,
    driver: Child,
    /// Holds the profile (`profile/`) and chromedriver's log.
    dir: Option<tempfile::TempDir>,
    /// How long chromedriver plus Chromium took to be ready.
    pub started_in: Duration,
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing (Debian package {package}): run `bash scripts/test-tools.sh` \
         (as root, or with sudo) to install chromium and chromium-driver"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where screenshots go: the repo's `target/screenshots/` (git-ignored).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn start() -> Browser {
        require(CHROMIUM, "chromium");
        require(CHROMEDRIVER, "chromium-driver");
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("payhook-browser-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("chromedriver.log");
        let profile = dir.path().join("profile");

        // A free port can be taken by someone else before chromedriver binds
        // it; then chromedriver exits and we try another.
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let driver = spawn_driver(port, &log);
            // From here on, Drop cleans up whatever happens.
            let mut b = Browser {
                client: None,
                driver,
                dir: None,
                started_in: Duration::ZERO,
            };
            match wait_listening(&mut b.driver, port).await {
                Ok(()) => {
                    b.dir = Some(dir);
                    b.connect(port, &profile).await;
                    b.started_in = t0.elapsed();
                    return b;
                }
                Err(e) => last_err = e,
            }
        }
        panic!("chromedriver did not start: {last_err}\n{}", tail(&log));
    }

    async fn connect(&mut self, port: u16, profile: &Path) {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size=1280,{MIN_HEIGHT}"));
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": 30_000, "script": 10_000, "implicit": 0},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let url = format!("http://127.0.0.1:{port}");
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(caps);
        match tokio::time::timeout(SESSION_START, builder.connect(&url)).await {
            Ok(Ok(client)) => self.client = Some(client),
            Ok(Err(e)) => panic!(
                "Chromium did not start through chromedriver: {e}\n{}",
                self.log_tail()
            ),
            Err(_) => panic!(
                "Chromium did not start within {SESSION_START:?}\n{}",
                self.log_tail()
            ),
        }
    }

    fn log_tail(&self) -> String {
        match &self.dir {
            Some(d) => tail(&d.path().join("chromedriver.log")),
            None => String::new(),
        }
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("browser is running")
    }

    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub async fn current_url(&self) -> url::Url {
        self.client().current_url().await.expect("current url")
    }

    async fn find(&self, css: &str) -> Element {
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css:?} on the page: {e}"))
    }

    /// Waits (bounded) until an element matching `css` is on the page.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.client()
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css:?} within {WAIT:?}: {e}"))
    }

    /// Replaces the value of the input matching `css` by typing `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css:?}: {e}"));
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css:?}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    /// Runs `js` as a function body in the page (`return …` gives a value).
    pub async fn execute(&self, js: &str) -> Value {
        self.client()
            .execute(js, vec![])
            .await
            .unwrap_or_else(|e| panic!("execute {js:?}: {e}"))
    }

    pub async fn cookies(&self) -> Vec<Cookie<'static>> {
        self.client().get_all_cookies().await.expect("cookies")
    }

    /// The current page's cookie `name`, if set.
    pub async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        self.cookies().await.into_iter().find(|c| c.name() == name)
    }

    /// Sets a cookie for the current page's host, path `/`, SameSite=Lax.
    pub async fn set_cookie(&self, name: &str, value: &str) {
        // Chromium refuses a cookie without a domain ("invalid 'domain'").
        let url = self.current_url().await;
        let host = url.host_str().unwrap_or_default();
        let c = Cookie::parse(format!(
            "{name}={value}; Domain={host}; Path=/; SameSite=Lax"
        ))
        .unwrap_or_else(|e| panic!("cookie {name}={value}: {e}"));
        self.client().add_cookie(c).await.expect("add cookie");
    }

    pub async fn delete_cookies(&self) {
        self.client()
            .delete_all_cookies()
            .await
            .expect("delete cookies");
    }

    /// Renders the current page `width` CSS pixels wide (1280 desktop, 390
    /// phone), as tall as its content (up to a cap), and writes the PNG to
    /// `target/screenshots/NAME-WIDTH.png`. The window gets its size back
    /// afterwards. Returns the PNG's path.
    pub async fn screenshot(&self, name: &str, width: u32) -> PathBuf {
        let c = self.client();
        let (w0, h0) = c.get_window_size().await.expect("window size");
        c.set_window_size(width, MIN_HEIGHT)
            .await
            .expect("set window size");
        // The window's height includes some browser frame even headless.
        let m = self
            .execute(
                "return [window.innerWidth, window.outerHeight - window.innerHeight, \
                 Math.ceil(document.documentElement.scrollHeight)]",
            )
            .await;
        let n = |i: usize| m[i].as_u64().unwrap_or(0) as u32;
        assert_eq!(
            n(0),
            width,
            "viewport is not {width} px wide after resizing the window"
        );
        let height = (n(1) + n(2)).clamp(MIN_HEIGHT, MAX_HEIGHT);
        if height != MIN_HEIGHT {
            c.set_window_size(width, height)
                .await
                .expect("set window size");
        }
        let png = c.screenshot().await.expect("screenshot");
        c.set_window_size(w0 as u32, h0 as u32)
            .await
            .expect("restore window size");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

fn spawn_driver(port: u16, log: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so that Drop can kill the driver and the
        // browser it started in one go.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"))
}

/// Waits until chromedriver answers its status URL, or gives up when it
/// exits or `WAIT` has passed.
async fn wait_listening(driver: &mut Child, port: u16) -> Result<(), String> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("chromedriver exited ({status}) on port {port}"));
        }
        // Someone else's server on the port would not answer this JSON.
        let ready = match http.get(&url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) => r
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v["value"]["ready"].is_boolean()),
            Err(_) => false,
        };
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "chromedriver not listening on port {port} after {WAIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    format!(
        "last lines of chromedriver's log ({}):\n{}",
        log.display(),
        lines[from..].join("\n")
    )
}

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().to_string();
            pid.parse::<u32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmd)
                .contains(needle)
                .then_some(pid)
        })
        .collect()
}

fn kill(args: &[String]) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Browser {
    /// Hard stop: no WebDriver call (the runtime may be unwinding a panic).
    fn drop(&mut self) {
        // Its session task would ask the (soon dead) driver to quit; harmless.
        self.client.take();
        kill(&[format!("-{}", self.driver.id())]);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if let Some(dir) = self.dir.take() {
            // Chromium helpers that left the driver's process group (or were
            // not in it) still name our profile on their command line.
            let needle = dir.path().join("profile").display().to_string();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let left = processes_mentioning(&needle);
                if left.is_empty() || Instant::now() > deadline {
                    break;
                }
                kill(&left);
                std::thread::sleep(Duration::from_millis(20));
            }
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                // A process we could not see may still have been writing.
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

#[cfg(test)]
mod self_test {
    use super::*;
    use axum::extract::Form;
    use axum::response::{Html, IntoResponse};
    use axum::routing::get;
    use axum::Router;
    use std::collections::HashMap;

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
    }

    fn page(body: &str) -> Html<String> {
        Html(format!(
            "<!doctype html><html><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width, initial-scale=1\">\
             <title>harness</title>\
             <style>body{{font:16px sans-serif;margin:1rem}} input{{font-size:1rem;width:100%;max-width:30rem}}</style>\
             </head><body>{body}</body></html>"
        ))
    }

    async fn form_page() -> Html<String> {
        page(
            "<h1>Say something</h1>\
             <form method=post action=/form>\
             <label for=q>Text</label> <input id=q name=q autocomplete=off>\
             <button id=go type=submit>Send</button></form>",
        )
    }

    async fn form_post(Form(f): Form<HashMap<String, String>>) -> impl IntoResponse {
        let q = f.get("q").cloned().unwrap_or_default();
        (
            [("set-cookie", "posted=yes; Path=/; SameSite=Strict")],
            page(&format!(
                "<h1>Posted</h1><p id=echo>You said: {}</p>",
                escape(&q)
            )),
        )
    }

    /// The console must show outside text as text: this one holds a script
    /// element only as escaped text, beside a real script as the control
    /// that `execute` does see what scripts did.
    async fn escaped_page() -> Html<String> {
        page(
            "<p id=msg>&lt;script&gt;window.pwned=1&lt;/script&gt;</p>\
             <script>window.ran = 1;</script>",
        )
    }

    async fn serve() -> String {
        let app = Router::new()
            .route("/form", get(form_page).post(form_post))
            .route("/escaped", get(escaped_page));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_harness_fills_clicks_reads_and_screenshots_a_real_page() {
        let base = serve().await;
        let t0 = Instant::now();
        let b = Browser::start().await;
        eprintln!(
            "browser: chromedriver + Chromium ready in {:?}",
            b.started_in
        );

        b.goto(&format!("{base}/form")).await;
        b.wait_for("#q").await;
        let hostile = "<script>window.pwned=1</script> & \"quotes\"";
        b.fill("#q", hostile).await;
        for width in [1280, 390] {
            b.screenshot("harness-form", width).await;
        }
        b.click("#go").await;
        b.wait_for("#echo").await;
        assert_eq!(b.text("#echo").await, format!("You said: {hostile}"));
        assert_eq!(b.current_url().await.path(), "/form");
        assert_eq!(b.execute("return typeof window.pwned").await, "undefined");
        let posted = b.cookie("posted").await.expect("the POST set a cookie");
        assert_eq!(posted.value(), "yes");
        b.set_cookie("mine", "1").await;
        assert!(b.cookie("mine").await.is_some());
        for width in [1280, 390] {
            let png = b.screenshot("harness-posted", width).await;
            let bytes = std::fs::read(&png).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
        }

        b.goto(&format!("{base}/escaped")).await;
        assert_eq!(
            b.text("#msg").await,
            "<script>window.pwned=1</script>",
            "escaped markup shows as text"
        );
        assert_eq!(b.execute("return window.ran").await, json!(1));
        assert_eq!(b.execute("return typeof window.pwned").await, "undefined");
        for width in [1280, 390] {
            b.screenshot("harness-escaped", width).await;
        }
        eprintln!("browser: self-test took {:?} in all", t0.elapsed());
    }

    #[tokio::test]
    async fn browser_is_cleaned_up_when_a_test_panics() {
        let profile = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen = profile.clone();
        // A panicking test body, in a task so that this test sees the panic.
        let res = tokio::spawn(async move {
            let b = Browser::start().await;
            let dir = b.dir.as_ref().unwrap().path().to_path_buf();
            *seen.lock().unwrap() = dir.display().to_string();
            assert!(!processes_mentioning(&dir.join("profile").display().to_string()).is_empty());
            panic!("deliberate panic with a browser open");
        })
        .await;
        assert!(res.unwrap_err().is_panic());
        let dir = profile.lock().unwrap().clone();
        assert!(!dir.is_empty());
        assert!(!Path::new(&dir).exists(), "{dir} removed");
        assert_eq!(
            processes_mentioning(&dir),
            Vec::<String>::new(),
            "no process left"
        );
    }
}
