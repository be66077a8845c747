//! Outbound delivery: one apalis job is one attempt.
//!
//! - `queue`   — apalis storages, workers, enqueue inside a store transaction
//! - `sender`  — one attempt: load → vet target → admit → sign → POST → classify
//! - `signer`  — `standard` (Standard Webhooks) and `hex` signatures, and `verify`
//! - `retry`   — backoff schedule and Retry-After parsing (pure functions)
//! - `governor`— per endpoint: in-flight cap, circuit breaker, rate limit (GCRA)
//! - `target`  — URL and address vetting (SSRF guard)
//! - `writer`  — batches attempt outcomes into few transactions
//! - `batcher` — the request-batching primitive (writer, context loader)
//! - `dlq`     — dead letters, resubmission and event replay

pub mod batcher;
pub mod dlq;
pub mod governor;
pub mod queue;
pub mod retry;
pub mod sender;
pub mod signer;
pub mod target;
pub mod writer;
