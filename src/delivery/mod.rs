//! Outbound delivery: one apalis job is one attempt.
//!
//! - `workers`     — apalis wiring: a worker per lane, restart, bounded stop
//! - `sender`      — one attempt: load → vet target → admit → sign → POST → classify
//! - `outcome`     — the outcome policy (pure): next step, and the plan a batch writes
//! - `writer`      — batches outcomes into few transactions (plan → store)
//! - `signer`      — `standard` (Standard Webhooks) and `hex` signatures, and `verify`
//! - `retry`       — backoff schedule and Retry-After parsing (pure functions)
//! - `governor`    — per endpoint: in-flight cap, circuit breaker, rate limit (GCRA)
//! - `target`      — URL and address vetting (SSRF guard)
//! - `proxy`       — egress through delivery.proxy, CONNECT to the vetted address
//! - `dlq`         — dead letters, resubmission and event replay
//! - `settings`    — what the config means for workers and sender (slots, polling)
//! - `housekeeping`— pruning, vacuum, rate-limit shares, cross-process wake-ups
//! - `batcher`     — the request-batching primitive (writer, context loader)

pub mod batcher;
pub mod dlq;
pub mod governor;
pub mod housekeeping;
pub mod outcome;
pub mod proxy;
pub mod retry;
pub mod sender;
pub mod settings;
pub mod signer;
pub mod target;
pub mod workers;
pub mod writer;
