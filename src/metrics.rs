//! Prometheus metrics. Counters and histograms are recorded where things
//! happen (the sender); gauges that describe stored state (queue depth, DLQ
//! size, deliveries by status) are read from the database at scrape time.
//! Label sets are bounded: outcome, status class, lane, reason; endpoints
//! appear only as scheme://host:port (never paths or query strings).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::AttemptErrorKind;
use crate::error::AppResult;
use crate::store::Store;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls are no-ops).
pub fn install() {
    HANDLE.get_or_init(|| {
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            3600.0,
        ];
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .ok()
            .and_then(|b| b.install_recorder().ok())
    });
}

/// One attempt: its outcome (`succeeded`, `retry`, `dead`), status class
/// (`2xx`…`5xx`, or the error kind) and duration.
pub fn attempt(
    outcome: &'static str,
    status: Option<u16>,
    error_kind: Option<AttemptErrorKind>,
    took: Duration,
) {
    let class = match (status, error_kind) {
        (Some(s), _) => match s / 100 {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            5 => "5xx",
            _ => "other",
        },
        (None, Some(kind)) => kind.as_str(),
        (None, None) => "none",
    };
    metrics::counter!("payhook_attempts_total", "outcome" => outcome, "status_class" => class)
        .increment(1);
    metrics::histogram!("payhook_attempt_duration_seconds").record(took.as_secs_f64());
}

/// Event created → 2xx received.
pub fn delivered(latency: Duration) {
    metrics::histogram!("payhook_delivery_latency_seconds").record(latency.as_secs_f64());
}

/// Something that should never happen did (stored data payhook cannot
/// read, a row it cannot encode): counted by what, and logged where it happened.
pub fn internal_error(what: &'static str) {
    metrics::counter!("payhook_internal_errors_total", "what" => what).increment(1);
}

/// An outcome write that failed (it is retried).
pub fn outcome_write_failed() {
    metrics::counter!("payhook_outcome_write_failures_total").increment(1);
}

/// Handlers waiting for a failed outcome write to go through.
pub fn outcome_writes_waiting(n: i64) {
    metrics::gauge!("payhook_outcome_writes_waiting").set(n.max(0) as f64);
}

/// Pending deliveries found without a queued job and queued again.
pub fn requeued(n: u64) {
    metrics::counter!("payhook_deliveries_requeued_total").increment(n);
}

/// A job held back without an attempt (circuit, in-flight cap, rate limit).
pub fn held(why: &'static str) {
    metrics::counter!("payhook_held_total", "reason" => why).increment(1);
}

/// Circuit state of an endpoint's origin (1 open, 0 closed).
pub fn circuit(origin: &str, open: bool) {
    metrics::gauge!("payhook_circuit_open", "endpoint" => origin.to_string()).set(if open {
        1.0
    } else {
        0.0
    });
}

/// A chain node's state after a try: up (1) or failing (0), and the kind
/// of failure counted.
pub fn chain_node(chain: &str, up: bool, failure: Option<&'static str>) {
    metrics::gauge!("payhook_chain_node_up", "chain" => chain.to_string()).set(if up {
        1.0
    } else {
        0.0
    });
    if let Some(kind) = failure {
        metrics::counter!("payhook_chain_node_errors_total", "chain" => chain.to_string(), "kind" => kind)
            .increment(1);
    }
}

/// The head height last read from a chain's node.
pub fn chain_head(chain: &str, head: i64) {
    metrics::gauge!("payhook_chain_head", "chain" => chain.to_string()).set(head as f64);
}

/// The text exposition: recorded metrics plus gauges read from the store.
pub async fn render(store: &Store) -> AppResult<String> {
    install();
    let mut out = HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default();
    // Each gauge counts only what is open (pending deliveries, unfinished
    // jobs, dead letters not yet resubmitted) through an index on it, so a
    // scrape costs the same at 10 rows or 10 million finished ones.
    // Finished deliveries are counted as they happen
    // (`payhook_attempts_total`).
    let pending = crate::store::deliveries::count_pending(store).await?;
    let (due, scheduled) = crate::store::jobs::depth(store.db()).await?;
    let dlq = crate::store::dead_letters::count_open(store).await?;
    out.push_str(&format!(
        "# HELP payhook_deliveries Deliveries not finished yet.\n# TYPE payhook_deliveries gauge\n\
         payhook_deliveries{{status=\"pending\"}} {pending}\n\
         # HELP payhook_queue_depth Queued attempts: due now, or scheduled for later.\n# TYPE payhook_queue_depth gauge\n\
         payhook_queue_depth{{state=\"due\"}} {due}\npayhook_queue_depth{{state=\"scheduled\"}} {scheduled}\n\
         # HELP payhook_dead_letters Dead letters not yet resubmitted.\n# TYPE payhook_dead_letters gauge\n\
         payhook_dead_letters {dlq}\n"
    ));
    Ok(out)
}
