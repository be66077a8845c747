//! One delivery attempt, as explicit steps with named outcomes:
//! load → (stale? skip) → vet target → rate limit → sign → POST → classify →
//! hand the outcome to the writer. Holds no transaction across network I/O.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use tracing::Instrument;

use crate::config::Config;
use crate::delivery::batcher::Batcher;
use crate::delivery::governor::{EndpointGovernor, GovernorSettings, Held};
use crate::delivery::queue::DeliveryJob;
use crate::delivery::retry::{parse_retry_after, RetryPolicy};
use crate::delivery::signer;
use crate::delivery::target::{self, TargetPolicy};
use crate::delivery::writer::{self, OutcomeWriter};
use crate::error::{AppError, AppResult};
use crate::store::deliveries::{self, AttemptContext, AttemptRecord, Finished, Next, Outcome};
use crate::store::Store;
use crate::time::now_ms;

pub const USER_AGENT: &str = concat!("payhook/", env!("CARGO_PKG_VERSION"));

/// How long a handler may wait in-process for the rate limiter before it
/// hands the job back to the queue instead (freeing its slot).
const MAX_INLINE_LIMITER_WAIT: Duration = Duration::from_secs(1);
/// Holds at least this long also park the endpoint's other queued jobs.
const PARK_AFTER: Duration = Duration::from_secs(2);
/// How long deliveries of a disabled merchant wait before they look again.
const DISABLED_RECHECK: Duration = Duration::from_secs(60);

pub struct Sender {
    client: reqwest::Client,
    retry: RetryPolicy,
    policy: TargetPolicy,
    max_response_bytes: usize,
    governor: EndpointGovernor,
    writer: OutcomeWriter,
    contexts: Batcher<String, Option<AttemptContext>>,
    in_flight: std::sync::atomic::AtomicUsize,
    /// `delivery.concurrency` bounds requests on the wire: first attempts
    /// get `concurrency` slots, retries a quarter of that. The queue runs
    /// more jobs than that at once (see `queue::TASKS_PER_REQUEST_SLOT`),
    /// so a job waiting for its attempt context or for its outcome to be
    /// committed does not hold a request slot.
    request_slots: [std::sync::Arc<tokio::sync::Semaphore>; 2],
}

/// What one HTTP exchange produced.
struct Exchange {
    status: Option<u16>,
    error_kind: Option<&'static str>,
    error: Option<String>,
    body: Option<String>,
    retry_after: Option<Duration>,
}

impl Sender {
    pub fn new(store: Store, cfg: &Config) -> AppResult<Sender> {
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
            .dns_resolver(std::sync::Arc::new(target::VettingResolver { policy }))
            .build()
            .map_err(|e| AppError::internal(format!("cannot build HTTP client: {e}")))?;
        let slots = crate::delivery::queue::WorkerSettings::from_config(cfg);
        Ok(Sender {
            writer: writer::spawn(store.clone(), cfg.circuit.disable_after.0),
            contexts: context_loader(store.clone()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            request_slots: [slots.first_requests, slots.retry_requests]
                .map(|n| std::sync::Arc::new(tokio::sync::Semaphore::new(n))),
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

    /// Handles one job. An `Err` means infrastructure failure (database):
    /// the queue runs the job again later; the attempt itself is never lost.
    pub async fn handle(&self, job: DeliveryJob, job_id: Option<String>) -> AppResult<()> {
        let span = tracing::info_span!(
            "attempt",
            delivery_id = %job.delivery_id,
            attempt = job.attempt,
            event_id = tracing::field::Empty,
            merchant_id = tracing::field::Empty,
        );
        use std::sync::atomic::Ordering;
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = self.handle_inner(job, job_id).instrument(span).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Jobs being handled right now (shutdown diagnostics).
    /// See [`EndpointGovernor::set_share`].
    pub fn set_rate_share(&self, processes: u32) {
        self.governor.set_share(processes);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn handle_inner(&self, job: DeliveryJob, job_id: Option<String>) -> AppResult<()> {
        let Some(ctx) = self.contexts.call(job.delivery_id.clone()).await? else {
            tracing::warn!("job for an unknown delivery; dropped");
            return Ok(());
        };
        let span = tracing::Span::current();
        span.record("event_id", ctx.event_id.as_str());
        span.record("merchant_id", ctx.merchant_id.as_str());
        if ctx.status != "pending" || ctx.attempts + 1 != job.attempt {
            // A job re-run after a crash, or a duplicate: already settled.
            tracing::debug!(status = %ctx.status, recorded = ctx.attempts, "stale job skipped");
            return Ok(());
        }
        if ctx.merchant_status != "active" {
            return self.defer(&job, &job_id, DISABLED_RECHECK, None).await;
        }

        let started_at = now_ms();
        let url = match target::vet_url("url", &ctx.url, self.policy) {
            Ok(u) => u,
            Err(e) => {
                crate::metrics::attempt("dead", None, Some("rejected_target"), Duration::ZERO);
                let record = record(
                    job.attempt,
                    started_at,
                    0,
                    None,
                    Some("rejected_target"),
                    Some(e.message),
                    None,
                );
                return self
                    .settle(
                        &job,
                        &job_id,
                        record,
                        Next::Dead {
                            reason: "rejected_target",
                        },
                    )
                    .await;
            }
        };

        let endpoint = target::endpoint_key(&url);
        let per_sec = ctx.rate_limit_per_sec.and_then(|r| u32::try_from(r).ok());
        let pass = loop {
            match self.governor.admit(&endpoint, per_sec).await {
                Ok(pass) => break pass,
                Err(Held::RateLimited(wait)) if wait <= MAX_INLINE_LIMITER_WAIT => {
                    tokio::time::sleep(wait).await
                }
                // Held back (open circuit, endpoint at its in-flight cap, a
                // long rate-limit wait): not an attempt, and no worker slot
                // is held while waiting.
                Err(held) => {
                    tracing::debug!(?held, "held back; deferred");
                    crate::metrics::held(match held {
                        Held::CircuitOpen(_) => "circuit_open",
                        Held::InFlight(_) => "in_flight",
                        Held::RateLimited(_) => "rate_limited",
                    });
                    let wait = held.wait() + Duration::from_millis(rand::random_range(0..250));
                    // A long hold (open circuit, stuck endpoint) parks the
                    // endpoint's other queued jobs too, once per hold.
                    let park = (wait >= PARK_AFTER && self.governor.claim_park(&endpoint, wait))
                        .then(|| endpoint.clone());
                    return self.defer(&job, &job_id, wait, park).await;
                }
            }
        };

        // A request slot only for the exchange itself: a job held back
        // above, or waiting for its outcome's commit below, holds none.
        let lane = usize::from(job.attempt > 1);
        let request_slot = self.request_slots[lane]
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::internal("request slots closed"))?;
        tracing::trace!("admitted");
        let started_at = now_ms();
        let clock = Instant::now();
        let ex = self.exchange(&ctx, url).await;
        tracing::trace!("exchange done");
        let duration_ms = clock.elapsed().as_millis() as i64;
        self.governor.record(
            &endpoint,
            ex.status.is_some_and(|s| (200..300).contains(&s)),
        );
        drop(pass);
        drop(request_slot);
        let next = self.decide(job.attempt, &ex);
        let outcome = match &next {
            Next::Succeeded => "succeeded",
            Next::Retry { .. } => "retry",
            Next::Dead { .. } => "dead",
        };
        crate::metrics::attempt(outcome, ex.status, ex.error_kind, clock.elapsed());
        if next == Next::Succeeded {
            let since_event = (now_ms() - ctx.event_created_at).max(0) as u64;
            crate::metrics::delivered(Duration::from_millis(since_event));
        }
        match &next {
            Next::Succeeded => tracing::debug!(status = ex.status, duration_ms, "delivered"),
            Next::Retry { at_ms } => tracing::info!(
                status = ex.status,
                error_kind = ex.error_kind,
                duration_ms,
                retry_in_ms = at_ms - now_ms(),
                "attempt failed; retry scheduled"
            ),
            Next::Dead { reason } => tracing::warn!(
                status = ex.status,
                error_kind = ex.error_kind,
                reason,
                "delivery dead-lettered"
            ),
        }
        let record = record(
            job.attempt,
            started_at,
            duration_ms,
            ex.status,
            ex.error_kind,
            ex.error,
            ex.body,
        );
        self.settle(&job, &job_id, record, next).await
    }

    fn decide(&self, attempt: i64, ex: &Exchange) -> Next {
        if ex.error_kind == Some("rejected_target") {
            return Next::Dead {
                reason: "rejected_target",
            };
        }
        match ex.status {
            Some(s) if (200..300).contains(&s) => return Next::Succeeded,
            Some(410) => return Next::Dead { reason: "gone" },
            _ => {}
        }
        let n = u32::try_from(attempt).unwrap_or(u32::MAX);
        if self.retry.exhausted(n) {
            return Next::Dead {
                reason: "exhausted",
            };
        }
        let delay = self.retry.delay(n, rand::random::<f64>(), ex.retry_after);
        Next::Retry {
            at_ms: now_ms() + delay.as_millis() as i64,
        }
    }

    async fn settle(
        &self,
        job: &DeliveryJob,
        job_id: &Option<String>,
        record: AttemptRecord,
        next: Next,
    ) -> AppResult<()> {
        self.writer
            .call(Finished {
                job_id: job_id.clone(),
                outcome: Outcome::Attempted {
                    delivery_id: job.delivery_id.clone(),
                    record,
                    next,
                },
            })
            .await
    }

    async fn defer(
        &self,
        job: &DeliveryJob,
        job_id: &Option<String>,
        wait: Duration,
        park: Option<String>,
    ) -> AppResult<()> {
        tracing::debug!(
            wait_ms = wait.as_millis() as u64,
            "not attempted now; deferred"
        );
        self.writer
            .call(Finished {
                job_id: job_id.clone(),
                outcome: Outcome::Deferred {
                    delivery_id: job.delivery_id.clone(),
                    attempt: job.attempt,
                    at_ms: now_ms() + wait.as_millis() as i64,
                    park,
                },
            })
            .await
    }

    /// Signs and POSTs the stored body; never fails, it describes what happened.
    async fn exchange(&self, ctx: &AttemptContext, url: url::Url) -> Exchange {
        let headers = match build_headers(ctx, now_ms() / 1000) {
            Ok(h) => h,
            Err(e) => {
                return Exchange {
                    status: None,
                    error_kind: Some("request"),
                    error: Some(e.message),
                    body: None,
                    retry_after: None,
                }
            }
        };
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(ctx.payload.clone())
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                if let Some(why) = target::rejection(&e) {
                    return Exchange {
                        status: None,
                        error_kind: Some("rejected_target"),
                        error: Some(why),
                        body: None,
                        retry_after: None,
                    };
                }
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                return Exchange {
                    status: None,
                    error_kind: Some(kind),
                    error: Some(describe(&e)),
                    body: None,
                    retry_after: None,
                };
            }
        };
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
        let (body, body_error) = read_prefix(&mut resp, self.max_response_bytes).await;
        let (error_kind, error) = match status {
            200..=299 => (None, body_error),
            300..=399 => (
                Some("redirect"),
                Some(format!(
                    "redirect {status} not followed; Location: {}",
                    location.unwrap_or_default()
                )),
            ),
            _ => (Some("status"), Some(format!("HTTP {status}"))),
        };
        Exchange {
            status: Some(status),
            error_kind,
            error,
            body: Some(body),
            retry_after,
        }
    }
}

fn record(
    attempt: i64,
    started_at: i64,
    duration_ms: i64,
    status: Option<u16>,
    error_kind: Option<&'static str>,
    error: Option<String>,
    body: Option<String>,
) -> AttemptRecord {
    AttemptRecord {
        attempt,
        started_at,
        duration_ms,
        status_code: status.map(i64::from),
        error_kind,
        error,
        response_body: body,
    }
}

/// Loads attempt contexts for many concurrent handlers in one query each
/// round (a point lookup per job would cost a database round trip each).
fn context_loader(store: Store) -> Batcher<String, Option<AttemptContext>> {
    Batcher::spawn(256, move |ids: Vec<String>| {
        let store = store.clone();
        async move {
            match deliveries::attempt_contexts(&store, &ids).await {
                Ok(rows) => {
                    let mut by_id: std::collections::HashMap<String, AttemptContext> = rows
                        .into_iter()
                        .map(|c| (c.delivery_id.clone(), c))
                        .collect();
                    ids.iter().map(|id| Ok(by_id.remove(id))).collect()
                }
                Err(e) => ids
                    .iter()
                    .map(|_| Err(AppError::internal(e.message.clone())))
                    .collect(),
            }
        }
    })
}

/// The request headers of one attempt. Signature and extra header values are
/// marked sensitive so no HTTP-level debug output can show them.
pub fn build_headers(ctx: &AttemptContext, timestamp: i64) -> AppResult<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("webhook-id", value(&ctx.event_id)?);
    h.insert("webhook-timestamp", value(&timestamp.to_string())?);
    let body = ctx.payload.as_bytes();
    if ctx.signature_scheme == "hex" {
        let name = ctx
            .signature_header
            .as_deref()
            .unwrap_or(signer::DEFAULT_HEX_HEADER);
        let prefix = ctx
            .signature_prefix
            .as_deref()
            .unwrap_or(signer::DEFAULT_HEX_PREFIX);
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            AppError::internal("merchant signature_header is not a valid header name")
        })?;
        h.insert(
            name,
            sensitive(&signer::hex_signature(&ctx.secret, prefix, body))?,
        );
    } else {
        let mut keys = vec![signer::standard_key(&ctx.secret)?];
        if let (Some(prev), Some(until)) = (&ctx.previous_secret, ctx.previous_secret_expires_at) {
            if until > now_ms() {
                keys.push(signer::standard_key(prev)?);
            }
        }
        h.insert(
            "webhook-signature",
            sensitive(&signer::standard_header(
                &keys,
                &ctx.event_id,
                timestamp,
                body,
            ))?,
        );
    }
    let extra: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&ctx.headers).unwrap_or_default();
    for (name, v) in extra {
        let Some(v) = v.as_str() else { continue };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| AppError::internal("merchant header name is invalid"))?;
        h.insert(name, sensitive(v)?);
    }
    Ok(h)
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
