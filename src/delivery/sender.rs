//! One delivery attempt, as explicit steps with named outcomes:
//! load → (stale? skip) → vet target → admit → sign → POST → classify →
//! hand the outcome to the writer. Holds no transaction across network I/O.
//! What an outcome means for the delivery is `outcome`'s to say.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delivery::batcher::Batcher;
use crate::delivery::governor::{EndpointGovernor, GovernorSettings, Held, Pass};
use crate::delivery::outcome::{self, Exchanged, Finished, HealthRules, Next, Outcome};
use crate::delivery::proxy::{ProxyClient, ProxyError};
use crate::delivery::retry::{parse_retry_after, RetryPolicy};
use crate::delivery::settings::WorkerSettings;
use crate::delivery::signer::{self, HexFormat};
use crate::delivery::target::{self, TargetPolicy};
use crate::delivery::writer::{self, OutcomeWriter, Patience};
use crate::domain::{
    AttemptErrorKind, DeadReason, DeliveryStatus, EndpointStatus, SignatureScheme,
};
use crate::error::{AppError, AppResult};
use crate::ids::DeliveryId;
use crate::sealing::KeyRing;
use crate::store::deliveries::{self, AttemptContext};
use crate::store::jobs::DeliveryJob;
use crate::store::outcomes::AttemptRecord;
use crate::store::Store;
use crate::time::now_ms;

pub const USER_AGENT: &str = concat!("payhook/", env!("CARGO_PKG_VERSION"));

/// How long a handler may wait in-process for the rate limiter before it
/// hands the job back to the queue instead (freeing its slot).
const MAX_INLINE_LIMITER_WAIT: Duration = Duration::from_secs(1);
/// Holds at least this long also park the endpoint's other queued jobs.
const PARK_AFTER: Duration = Duration::from_secs(2);
/// How long a job waits when this process has no file descriptor to spare.
const LOCAL_SHORTAGE_RETRY: Duration = Duration::from_secs(1);
/// How long a job whose attempt could not be loaded waits.
const LOAD_FAILED_RETRY: Duration = Duration::from_secs(5);
/// How long a held-back job keeps trying to record its deferral.
const DEFER_PATIENCE: Duration = Duration::from_secs(10);
/// How long deliveries of a disabled merchant wait before they look again.
const DISABLED_RECHECK: Duration = Duration::from_secs(60);

pub struct Sender {
    client: reqwest::Client,
    retry: RetryPolicy,
    policy: TargetPolicy,
    max_response_bytes: usize,
    governor: EndpointGovernor,
    writer: OutcomeWriter,
    /// Opens the sealed secrets and header values of attempt contexts.
    keys: KeyRing,
    /// `delivery.proxy`, when egress goes through one.
    proxy: Option<ProxyClient>,
    timeout: Duration,
    contexts: Batcher<DeliveryId, Option<AttemptContext>>,
    in_flight: Arc<AtomicUsize>,
    /// `delivery.concurrency` bounds requests on the wire: first attempts
    /// get `concurrency` slots, retries a quarter of that. The queue runs
    /// more jobs than that at once (`settings::TASKS_PER_REQUEST_SLOT`), so a
    /// job waiting for its attempt context or for its outcome to be
    /// committed does not hold a request slot.
    request_slots: [Arc<Semaphore>; 2],
}

/// What one HTTP exchange produced.
struct Exchange {
    status: Option<u16>,
    error_kind: Option<AttemptErrorKind>,
    error: Option<String>,
    body: Option<String>,
    retry_after: Option<Duration>,
    /// The request was not made: no file descriptor for its socket.
    local_shortage: bool,
}

impl Sender {
    pub fn new(
        store: Store,
        cfg: &Config,
        slots: &WorkerSettings,
        shutdown: CancellationToken,
    ) -> AppResult<Sender> {
        let d = &cfg.delivery;
        let policy = TargetPolicy {
            allow_http: d.allow_http,
            allow_private_targets: d.allow_private_targets,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(d.timeout.0)
            .connect_timeout(d.connect_timeout.0)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .dns_resolver(Arc::new(target::VettingResolver { policy }))
            // Proxy variables of the environment would send the merchant's
            // host name to a proxy unchecked: only delivery.proxy is used.
            .no_proxy()
            .build()
            .map_err(|e| AppError::internal(format!("cannot build HTTP client: {e}")))?;
        let proxy = d
            .proxy
            .as_deref()
            .map(|p| ProxyClient::new(p, policy, d.connect_timeout.0, USER_AGENT))
            .transpose()?;
        Ok(Sender {
            proxy,
            timeout: d.timeout.0,
            keys: store.keys()?.clone(),
            writer: writer::spawn(store.clone(), HealthRules::of(&cfg.circuit), shutdown),
            contexts: context_loader(store),
            in_flight: Arc::new(AtomicUsize::new(0)),
            request_slots: [slots.first_requests, slots.retry_requests]
                .map(|n| Arc::new(Semaphore::new(n))),
            client,
            retry: RetryPolicy::from_config(&cfg.retry),
            policy,
            max_response_bytes: d.max_response_bytes as usize,
            governor: EndpointGovernor::new(GovernorSettings {
                rate_per_sec: d.rate_limit_per_sec,
                burst: d.rate_limit_burst,
                max_in_flight: d.max_in_flight_per_endpoint,
                // Every job the queue runs at once may wait for a slot of
                // an answering endpoint (rather than be deferred a second).
                max_waiters: (slots.first_concurrency + slots.retry_concurrency) as u32,
                request_timeout: d.timeout.0,
                failure_threshold: cfg.circuit.failure_threshold,
                cooldown: cfg.circuit.cooldown.0,
            }),
        })
    }

    /// See [`EndpointGovernor::set_share`].
    pub fn set_rate_share(&self, processes: u32) {
        self.governor.set_share(processes);
    }

    /// Jobs being handled right now (shutdown diagnostics).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Handles one job: load → (stale? skip) → vet target → admit → attempt
    /// → hand the outcome to the writer. An `Err` means an infrastructure
    /// failure (database): the queue runs the job again later.
    #[tracing::instrument(name = "attempt", skip_all, fields(
        delivery_id = %job.delivery_id,
        attempt = job.attempt,
        event_id = tracing::field::Empty,
        merchant_id = tracing::field::Empty,
    ))]
    pub async fn handle(&self, job: DeliveryJob, job_id: Option<String>) -> AppResult<()> {
        let _counted = InFlight::enter(&self.in_flight);
        let ctx = match self.load(&job).await {
            Ok(Some(ctx)) => ctx,
            Ok(None) => return Ok(()),
            // No request was made: try again in a while rather than at once.
            Err(e) => {
                tracing::debug!(error = %e, "loading the attempt failed; deferred");
                return self.defer(&job, job_id, LOAD_FAILED_RETRY, None).await;
            }
        };
        if !ctx.has_signer {
            let why = "the merchant has no endpoint left to sign with".to_string();
            return self
                .refuse(&job, job_id, DeadReason::EndpointDisabled, why)
                .await;
        }
        if ctx.endpoint_status != EndpointStatus::Active {
            return self.defer(&job, job_id, DISABLED_RECHECK, None).await;
        }
        let url = match target::vet_url("url", &ctx.url, self.policy) {
            Ok(u) => u,
            Err(e) => {
                let reason = DeadReason::RejectedTarget;
                return self.refuse(&job, job_id, reason, e.message).await;
            }
        };
        let endpoint = crate::urls::endpoint_key(&url);
        let per_sec = ctx.rate_limit_per_sec.and_then(|r| u32::try_from(r).ok());
        let pass = match self.admit(&endpoint, per_sec).await {
            Ok(pass) => pass,
            Err(held) => return self.hold(&job, job_id, &endpoint, held).await,
        };
        match self.attempt(&job, &ctx, url, &endpoint, pass).await? {
            Some((record, next)) => self.settle(&job, job_id, record, next).await,
            // This process ran out of file descriptors: not the merchant's
            // failure, and not an attempt.
            None => {
                crate::metrics::held("local_resources");
                self.defer(&job, job_id, LOCAL_SHORTAGE_RETRY, None).await
            }
        }
    }

    /// The attempt's context, unless the job is stale (re-run after a
    /// crash, or a duplicate: its delivery moved on).
    async fn load(&self, job: &DeliveryJob) -> AppResult<Option<AttemptContext>> {
        let Some(ctx) = self.contexts.call(job.delivery_id.clone()).await? else {
            tracing::warn!("job for an unknown delivery; dropped");
            return Ok(None);
        };
        let span = tracing::Span::current();
        span.record("event_id", ctx.event_id.as_str());
        span.record("merchant_id", ctx.merchant_id.as_str());
        if ctx.status != DeliveryStatus::Pending || ctx.attempts + 1 != job.attempt {
            tracing::debug!(status = %ctx.status, recorded = ctx.attempts, "stale job skipped");
            return Ok(None);
        }
        Ok(Some(ctx))
    }

    /// A delivery that cannot be sent (a target the policy refuses, no
    /// endpoint to sign with): dead at once, no request made.
    async fn refuse(
        &self,
        job: &DeliveryJob,
        job_id: Option<String>,
        reason: DeadReason,
        why: String,
    ) -> AppResult<()> {
        let kind = match reason {
            DeadReason::RejectedTarget => AttemptErrorKind::RejectedTarget,
            _ => AttemptErrorKind::Request,
        };
        let next = Next::Dead { reason };
        crate::metrics::attempt(next.label(), None, Some(kind), Duration::ZERO);
        let record = AttemptRecord {
            attempt: job.attempt,
            started_at: now_ms(),
            duration_ms: 0,
            status_code: None,
            error_kind: Some(kind),
            error: Some(why),
            response_body: None,
        };
        self.settle(job, job_id, record, next).await
    }

    /// Waits in place for a short rate-limit wait; anything longer is the
    /// caller's to defer.
    async fn admit(&self, endpoint: &str, per_sec: Option<u32>) -> Result<Pass, Held> {
        loop {
            match self.governor.admit(endpoint, per_sec).await {
                Ok(pass) => return Ok(pass),
                Err(Held::RateLimited(wait)) if wait <= MAX_INLINE_LIMITER_WAIT => {
                    tokio::time::sleep(wait).await
                }
                Err(held) => return Err(held),
            }
        }
    }

    /// Held back (open circuit, endpoint at its in-flight cap, a long
    /// rate-limit wait): not an attempt, and no worker slot is held while
    /// waiting. A long hold parks the endpoint's other queued jobs too, once
    /// per hold.
    async fn hold(
        &self,
        job: &DeliveryJob,
        job_id: Option<String>,
        endpoint: &str,
        held: Held,
    ) -> AppResult<()> {
        tracing::debug!(?held, "held back; deferred");
        crate::metrics::held(match held {
            Held::CircuitOpen(_) => "circuit_open",
            Held::InFlight(_) => "in_flight",
            Held::RateLimited(_) => "rate_limited",
        });
        let wait = held.wait() + Duration::from_millis(rand::random_range(0..250));
        let park = (wait >= PARK_AFTER && self.governor.claim_park(endpoint, wait))
            .then(|| endpoint.to_string());
        self.defer(job, job_id, wait, park).await
    }

    /// One request under a request slot (a job held back, or waiting for its
    /// outcome's commit, holds none), then what it means.
    async fn attempt(
        &self,
        job: &DeliveryJob,
        ctx: &AttemptContext,
        url: url::Url,
        endpoint: &str,
        pass: Pass,
    ) -> AppResult<Option<(AttemptRecord, Next)>> {
        let lane = usize::from(job.attempt > 1);
        let request_slot = self.request_slots[lane]
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::internal("request slots closed"))?;
        let started_at = now_ms();
        let clock = Instant::now();
        let ex = self.exchange(ctx, url).await;
        if ex.local_shortage {
            tracing::warn!("out of file descriptors for a request; attempt deferred");
            return Ok(None);
        }
        let took = clock.elapsed();
        self.governor.record(endpoint, ex.succeeded());
        drop(pass);
        drop(request_slot);
        let next = outcome::next_after(
            &self.retry,
            job.attempt,
            ex.policy_view(),
            now_ms(),
            rand::random::<f64>(),
        );
        report(&next, &ex, ctx, took);
        let record = AttemptRecord {
            attempt: job.attempt,
            started_at,
            duration_ms: took.as_millis() as i64,
            status_code: ex.status.map(i64::from),
            error_kind: ex.error_kind,
            error: ex.error,
            response_body: ex.body,
        };
        Ok(Some((record, next)))
    }

    async fn settle(
        &self,
        job: &DeliveryJob,
        job_id: Option<String>,
        record: AttemptRecord,
        next: Next,
    ) -> AppResult<()> {
        let outcome = Outcome::Attempted {
            delivery_id: job.delivery_id.clone(),
            record,
            next,
        };
        let finished = Finished { job_id, outcome };
        self.writer.record(finished, Patience::UntilRecorded).await
    }

    async fn defer(
        &self,
        job: &DeliveryJob,
        job_id: Option<String>,
        wait: Duration,
        park: Option<String>,
    ) -> AppResult<()> {
        tracing::debug!(
            wait_ms = wait.as_millis() as u64,
            "not attempted now; deferred"
        );
        let outcome = Outcome::Deferred {
            delivery_id: job.delivery_id.clone(),
            attempt: job.attempt,
            at_ms: now_ms() + wait.as_millis() as i64,
            park,
        };
        let finished = Finished { job_id, outcome };
        match self
            .writer
            .record(finished, Patience::For(DEFER_PATIENCE))
            .await
        {
            Ok(()) => Ok(()),
            // The job ends here; the reconciler queues the delivery again.
            Err(_) => Ok(()),
        }
    }

    /// The same through `delivery.proxy`, bounded by `delivery.timeout`.
    async fn exchange_via(
        &self,
        proxy: &ProxyClient,
        url: url::Url,
        headers: HeaderMap,
        ctx: &AttemptContext,
    ) -> Exchange {
        let sent = async {
            let resp = proxy.post(&url, headers, ctx.payload.clone()).await?;
            Ok::<_, ProxyError>(read_response(resp, self.max_response_bytes).await)
        };
        match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(ex)) => ex,
            Ok(Err(ProxyError::Rejected(why))) => {
                Exchange::failed(AttemptErrorKind::RejectedTarget, why)
            }
            Ok(Err(ProxyError::Timeout(why))) => Exchange::failed(AttemptErrorKind::Timeout, why),
            Ok(Err(ProxyError::Connect(why))) => Exchange::failed(AttemptErrorKind::Connect, why),
            Ok(Err(ProxyError::Request(why))) => Exchange::failed(AttemptErrorKind::Request, why),
            Err(_) => Exchange::failed(AttemptErrorKind::Timeout, "timed out".into()),
        }
    }

    /// Signs and POSTs the stored body; never fails, it describes what happened.
    async fn exchange(&self, ctx: &AttemptContext, url: url::Url) -> Exchange {
        let headers = match build_headers(ctx, &self.keys, now_ms() / 1000) {
            Ok(h) => h,
            Err(e) => return Exchange::failed(AttemptErrorKind::Request, e.message),
        };
        if let Some(proxy) = &self.proxy {
            return self.exchange_via(proxy, url, headers, ctx).await;
        }
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(ctx.payload.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => read_response(resp, self.max_response_bytes).await,
            Err(e) => match target::rejection(&e) {
                Some(why) => Exchange::failed(AttemptErrorKind::RejectedTarget, why),
                None if is_fd_shortage(&e) => Exchange {
                    local_shortage: true,
                    ..Exchange::failed(AttemptErrorKind::Connect, describe(&e))
                },
                None => {
                    let kind = if e.is_timeout() {
                        AttemptErrorKind::Timeout
                    } else if e.is_connect() {
                        AttemptErrorKind::Connect
                    } else {
                        AttemptErrorKind::Request
                    };
                    Exchange::failed(kind, describe(&e))
                }
            },
        }
    }
}

/// Counts a handler in flight while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Metrics and one log line for an attempt.
fn report(next: &Next, ex: &Exchange, ctx: &AttemptContext, took: Duration) {
    crate::metrics::attempt(next.label(), ex.status, ex.error_kind, took);
    let duration_ms = took.as_millis() as u64;
    match next {
        Next::Succeeded => {
            let since_event = (now_ms() - ctx.event_created_at).max(0) as u64;
            crate::metrics::delivered(Duration::from_millis(since_event));
            tracing::debug!(status = ex.status, duration_ms, "delivered")
        }
        Next::Retry { at_ms } => tracing::info!(
            status = ex.status,
            error_kind = ex.error_kind.map(AttemptErrorKind::as_str),
            duration_ms,
            retry_in_ms = at_ms - now_ms(),
            "attempt failed; retry scheduled"
        ),
        Next::Dead { reason } => tracing::warn!(
            status = ex.status,
            error_kind = ex.error_kind.map(AttemptErrorKind::as_str),
            reason = reason.as_str(),
            "delivery dead-lettered"
        ),
    }
}

impl Exchange {
    fn failed(kind: AttemptErrorKind, error: String) -> Exchange {
        Exchange {
            status: None,
            error_kind: Some(kind),
            error: Some(error),
            body: None,
            retry_after: None,
            local_shortage: false,
        }
    }

    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn policy_view(&self) -> Exchanged {
        Exchanged {
            status: self.status,
            error_kind: self.error_kind,
            retry_after: self.retry_after,
        }
    }
}

/// Status, `Retry-After` (429/503), the Location of a redirect (which is
/// not followed) and the body's first bytes.
async fn read_response(mut resp: reqwest::Response, max_body: usize) -> Exchange {
    let status = resp.status().as_u16();
    let retry_after = if status == 429 || status == 503 {
        resp.headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    } else {
        None
    };
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect::<String>());
    let (body, body_error) = read_prefix(&mut resp, max_body).await;
    let (error_kind, error) = match status {
        200..=299 => (None, body_error),
        300..=399 => (
            Some(AttemptErrorKind::Redirect),
            Some(format!(
                "redirect {status} not followed; Location: {}",
                location.unwrap_or_default()
            )),
        ),
        _ => (
            Some(AttemptErrorKind::Status),
            Some(format!("HTTP {status}")),
        ),
    };
    Exchange {
        status: Some(status),
        error_kind,
        error,
        body: Some(body),
        retry_after,
        local_shortage: false,
    }
}

/// Whether a request failed because this process (or the system) ran out
/// of file descriptors (EMFILE, ENFILE) rather than anything the receiver
/// did.
fn is_fd_shortage(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(23) | Some(24)) {
                return true;
            }
            // An io::Error wrapping another error hides it from `source()`.
            if let Some(inner) = io.get_ref() {
                if is_fd_shortage(inner) {
                    return true;
                }
            }
        }
        cur = err.source();
    }
    false
}

/// Context loads served at once: reads, which neither backend serialises.
const CONTEXT_LOADS_AT_ONCE: usize = 2;

/// Loads attempt contexts for many concurrent handlers in one query each
/// round (a point lookup per job would cost a database round trip each).
fn context_loader(store: Store) -> Batcher<DeliveryId, Option<AttemptContext>> {
    Batcher::spawn(256, CONTEXT_LOADS_AT_ONCE, move |ids: Vec<DeliveryId>| {
        let store = store.clone();
        async move {
            match deliveries::attempt_contexts(&store, &ids).await {
                Ok(rows) => {
                    let mut by_id: std::collections::HashMap<DeliveryId, AttemptContext> = rows
                        .into_iter()
                        .map(|c| (c.delivery_id.clone(), c))
                        .collect();
                    ids.iter().map(|id| Ok(by_id.remove(id))).collect()
                }
                Err(e) => ids
                    .iter()
                    .map(|_| Err(AppError::new(e.kind, e.message.clone())))
                    .collect(),
            }
        }
    })
}

/// The request headers of one attempt. Signature and extra header values are
/// marked sensitive so no HTTP-level debug output can show them.
pub fn build_headers(ctx: &AttemptContext, keys: &KeyRing, timestamp: i64) -> AppResult<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("webhook-id", value(ctx.event_id.as_str())?);
    h.insert("webhook-timestamp", value(&timestamp.to_string())?);
    let body = ctx.payload.as_bytes();
    match ctx.signature_scheme {
        SignatureScheme::Hex => {
            let format = HexFormat::new(
                ctx.signature_header.as_deref(),
                ctx.signature_prefix.as_deref(),
            );
            let name = HeaderName::from_bytes(format.header.as_bytes()).map_err(|_| {
                AppError::internal("merchant signature_header is not a valid header name")
            })?;
            let secret = keys.open(&ctx.secret)?;
            let sig = signer::hex_signature(secret.expose(), format.prefix, body);
            h.insert(name, sensitive(&sig)?);
        }
        SignatureScheme::Standard => {
            let mut hmac_keys = vec![signer::standard_key(keys.open(&ctx.secret)?.expose())?];
            if let (Some(prev), Some(until)) =
                (&ctx.previous_secret, ctx.previous_secret_expires_at)
            {
                if until > now_ms() {
                    hmac_keys.push(signer::standard_key(keys.open(prev)?.expose())?);
                }
            }
            let sig = signer::standard_header(&hmac_keys, ctx.event_id.as_str(), timestamp, body);
            h.insert("webhook-signature", sensitive(&sig)?);
        }
    }
    for (name, v) in extra_headers(ctx, keys)? {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| AppError::internal("merchant header name is invalid"))?;
        h.insert(name, sensitive(&v)?);
    }
    Ok(h)
}

/// The merchant's extra static headers. Stored JSON that is not an object
/// of strings is payhook's bug, not the merchant's: it is logged, counted
/// and fails the attempt rather than sending without the headers.
fn extra_headers(ctx: &AttemptContext, keys: &KeyRing) -> AppResult<Vec<(String, String)>> {
    crate::store::endpoints::open_headers(keys, &ctx.headers).inspect_err(|e| {
        crate::metrics::internal_error("extra_headers");
        tracing::error!(error = %e, "stored extra headers cannot be read; attempt fails");
    })
}

fn value(s: &str) -> AppResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(|_| AppError::internal("header value is not valid"))
}

fn sensitive(s: &str) -> AppResult<HeaderValue> {
    let mut v = value(s)?;
    v.set_sensitive(true);
    Ok(v)
}

/// Reads at most `limit` bytes of the body (the rest is never read). It is
/// kept as text: invalid UTF-8 and NUL bytes (which Postgres text cannot
/// hold) become U+FFFD.
async fn read_prefix(resp: &mut reqwest::Response, limit: usize) -> (String, Option<String>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut error = None;
    while buf.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let take = (limit - buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("reading response body: {}", describe(&e)));
                break;
            }
        }
    }
    (
        String::from_utf8_lossy(&buf).replace('\0', "\u{fffd}"),
        error,
    )
}

/// An error's causes without the URL (which may carry a token in its query).
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let head = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connect failed"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request failed"
    };
    if parts.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {}", parts.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::is_fd_shortage;

    #[test]
    fn running_out_of_file_descriptors_is_told_apart_from_a_refused_connection() {
        let emfile = std::io::Error::from_raw_os_error(24);
        let wrapped = std::io::Error::other(emfile);
        assert!(is_fd_shortage(&wrapped));
        assert!(is_fd_shortage(&std::io::Error::from_raw_os_error(23)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_fd_shortage(&refused));
    }
}
