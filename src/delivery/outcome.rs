//! The outcome policy, as pure functions: what an attempt's exchange means
//! for its delivery ([`next_after`]), and what a batch of finished jobs asks
//! the store to write ([`plan`]): the next job and its lane, the
//! dead-letter reason, the endpoint's success or failure, what a 410
//! disables, when a failing endpoint is disabled, which endpoints to park.
//! The store writes the plan and decides nothing.

use std::time::Duration;

use crate::delivery::retry::RetryPolicy;
use crate::domain::{AttemptErrorKind, DeadReason, DeliveryStatus, Lane};
use crate::ids::DeliveryId;
use crate::store::jobs::{DeliveryJob, NewJob};
use crate::store::outcomes::{AttemptRecord, AttemptWrite, Deferral, Plan};

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Succeeded,
    /// Try again at this time (unix ms).
    Retry {
        at_ms: i64,
    },
    Dead {
        reason: DeadReason,
    },
}

impl Next {
    /// The label of metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Next::Succeeded => "succeeded",
            Next::Retry { .. } => "retry",
            Next::Dead { .. } => "dead",
        }
    }
}

/// The result of handling one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Attempted {
        delivery_id: DeliveryId,
        record: AttemptRecord,
        next: Next,
    },
    /// Not attempted (rate limit, open circuit, endpoint at its in-flight
    /// cap, disabled merchant): run the same attempt at `at_ms`.
    Deferred {
        delivery_id: DeliveryId,
        attempt: i64,
        at_ms: i64,
        /// Also hold every other queued job of this endpoint until `at_ms`
        /// (a stuck endpoint or an open circuit: one statement, instead of
        /// each of its jobs being fetched and deferred on its own).
        park: Option<String>,
    },
}

/// An outcome plus the queue job that produced it; the job is removed in
/// the same transaction that records the outcome, so a crash can never make
/// a finished job run again.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub job_id: Option<String>,
    pub outcome: Outcome,
}

/// What one HTTP exchange produced, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exchanged {
    pub status: Option<u16>,
    pub error_kind: Option<AttemptErrorKind>,
    /// A 429/503's `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// The delivery's next step after attempt number `attempt`. `jitter` is a
/// uniform sample in [0, 1) for the retry delay.
pub fn next_after(
    retry: &RetryPolicy,
    attempt: i64,
    ex: Exchanged,
    now_ms: i64,
    jitter: f64,
) -> Next {
    if ex.error_kind == Some(AttemptErrorKind::RejectedTarget) {
        return Next::Dead {
            reason: DeadReason::RejectedTarget,
        };
    }
    match ex.status {
        Some(s) if (200..300).contains(&s) => return Next::Succeeded,
        // Standard Webhooks: 410 means "stop sending".
        Some(410) => {
            return Next::Dead {
                reason: DeadReason::Gone,
            }
        }
        _ => {}
    }
    let n = u32::try_from(attempt).unwrap_or(u32::MAX);
    if retry.exhausted(n) {
        return Next::Dead {
            reason: DeadReason::Exhausted,
        };
    }
    let delay = retry.delay(n, jitter, ex.retry_after);
    Next::Retry {
        at_ms: now_ms.saturating_add(delay.as_millis().min(i64::MAX as u128) as i64),
    }
}

/// When an endpoint's failures count as an outage (`circuit.*`).
#[derive(Debug, Clone, Copy)]
pub struct HealthRules {
    /// Failing this long without a success disables the endpoint.
    pub disable_after: Duration,
    /// This many failures in a row tell the operator it is failing.
    pub failure_threshold: u32,
}

impl HealthRules {
    pub fn of(c: &crate::config::CircuitConfig) -> Self {
        HealthRules {
            disable_after: c.disable_after.0,
            failure_threshold: c.failure_threshold,
        }
    }
}

/// The plan for a batch of finished jobs, and the endpoints to park (after
/// the commit, on their own: parking a large backlog takes a while).
pub fn plan(batch: &[Finished], now: i64, rules: HealthRules) -> (Plan, Vec<(String, i64)>) {
    let mut plan = Plan {
        now,
        finished_jobs: batch.iter().filter_map(|f| f.job_id.clone()).collect(),
        disable_failing_since_before: now
            .saturating_sub(rules.disable_after.as_millis().min(i64::MAX as u128) as i64),
        failing_after_failures: i64::from(rules.failure_threshold.max(1)),
        ..Plan::default()
    };
    let mut parks = Vec::new();
    for f in batch {
        match &f.outcome {
            Outcome::Attempted {
                delivery_id,
                record,
                next,
            } => plan
                .attempts
                .push(attempt_write(delivery_id, record, next, now)),
            Outcome::Deferred {
                delivery_id,
                attempt,
                at_ms,
                park,
            } => {
                plan.deferrals.push(Deferral {
                    delivery_id: delivery_id.clone(),
                    attempt: *attempt,
                    job: job(delivery_id, *attempt, *at_ms),
                });
                parks.extend(park.iter().map(|e| (e.clone(), *at_ms)));
            }
        }
    }
    (plan, parks)
}

fn job(delivery_id: &DeliveryId, attempt: i64, at_ms: i64) -> NewJob {
    NewJob {
        job: DeliveryJob {
            delivery_id: delivery_id.clone(),
            attempt,
        },
        run_at_ms: at_ms,
        lane: Lane::for_attempt(attempt),
    }
}

/// One attempt's consequences. A retry or an exhausted delivery counts
/// against the endpoint's health; a success restores it; a refused target
/// or a 410 says nothing about whether the endpoint is up.
fn attempt_write(
    delivery_id: &DeliveryId,
    record: &AttemptRecord,
    next: &Next,
    now: i64,
) -> AttemptWrite {
    let mut w = AttemptWrite {
        delivery_id: delivery_id.clone(),
        record: record.clone(),
        status: DeliveryStatus::Pending,
        next_attempt_at: None,
        completed_at: None,
        next_job: None,
        dead_letter: None,
        endpoint_ok: None,
        disable_endpoint: None,
    };
    match next {
        Next::Succeeded => {
            w.status = DeliveryStatus::Succeeded;
            w.completed_at = Some(now);
            w.endpoint_ok = Some(true);
        }
        Next::Retry { at_ms } => {
            w.next_attempt_at = Some(*at_ms);
            w.next_job = Some(job(delivery_id, record.attempt + 1, *at_ms));
            w.endpoint_ok = Some(false);
        }
        Next::Dead { reason } => {
            w.status = DeliveryStatus::Dead;
            w.completed_at = Some(now);
            w.dead_letter = Some(*reason);
            if *reason == DeadReason::Exhausted {
                w.endpoint_ok = Some(false);
            }
            if *reason == DeadReason::Gone {
                w.disable_endpoint = Some(format!(
                    "410 Gone from the webhook URL at {}",
                    crate::time::rfc3339(now)
                ));
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(disable_after_secs: u64) -> HealthRules {
        HealthRules {
            disable_after: Duration::from_secs(disable_after_secs),
            failure_threshold: 10,
        }
    }
    use crate::config::RetryConfig;
    use proptest::prelude::*;

    fn record(attempt: i64) -> AttemptRecord {
        AttemptRecord {
            attempt,
            started_at: 1,
            duration_ms: 2,
            status_code: Some(500),
            error_kind: Some(AttemptErrorKind::Status),
            error: Some("HTTP 500".into()),
            response_body: None,
        }
    }

    fn attempted(id: &str, attempt: i64, next: Next) -> Finished {
        Finished {
            job_id: Some(format!("job-{id}")),
            outcome: Outcome::Attempted {
                delivery_id: DeliveryId::from(id),
                record: record(attempt),
                next,
            },
        }
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy::from_config(&RetryConfig {
            max_attempts,
            base: crate::config::HumanDuration(Duration::from_secs(5)),
            cap: crate::config::HumanDuration(Duration::from_secs(3600)),
            jitter: 0.0,
        })
    }

    fn exchanged(status: Option<u16>, kind: Option<AttemptErrorKind>) -> Exchanged {
        Exchanged {
            status,
            error_kind: kind,
            retry_after: None,
        }
    }

    #[test]
    fn a_retry_is_queued_in_the_retry_lane_as_the_next_attempt() {
        let (plan, parks) = plan(
            &[attempted("dlv_a", 1, Next::Retry { at_ms: 9_000 })],
            1_000,
            rules(60),
        );
        assert!(parks.is_empty());
        assert_eq!(plan.finished_jobs, ["job-dlv_a"]);
        let w = &plan.attempts[0];
        assert_eq!(w.status, DeliveryStatus::Pending);
        assert_eq!(w.next_attempt_at, Some(9_000));
        let next = w.next_job.as_ref().unwrap();
        assert_eq!(
            (next.job.attempt, next.lane, next.run_at_ms),
            (2, Lane::Retry, 9_000)
        );
        assert_eq!(w.endpoint_ok, Some(false));
        assert_eq!(plan.disable_failing_since_before, 1_000 - 60_000);
    }

    #[test]
    fn gone_disables_the_merchant_but_does_not_count_as_an_endpoint_failure() {
        let (plan, _) = plan(
            &[attempted(
                "dlv_a",
                3,
                Next::Dead {
                    reason: DeadReason::Gone,
                },
            )],
            5,
            rules(1),
        );
        let w = &plan.attempts[0];
        assert_eq!(w.status, DeliveryStatus::Dead);
        assert_eq!(w.dead_letter, Some(DeadReason::Gone));
        assert!(w
            .disable_endpoint
            .as_deref()
            .unwrap()
            .starts_with("410 Gone"));
        assert_eq!(w.endpoint_ok, None);
        assert!(w.next_job.is_none());
    }

    #[test]
    fn exhausted_counts_against_the_endpoint_and_rejected_target_does_not() {
        let (plan, _) = plan(
            &[
                attempted(
                    "dlv_a",
                    20,
                    Next::Dead {
                        reason: DeadReason::Exhausted,
                    },
                ),
                attempted(
                    "dlv_b",
                    1,
                    Next::Dead {
                        reason: DeadReason::RejectedTarget,
                    },
                ),
            ],
            5,
            rules(1),
        );
        assert_eq!(plan.attempts[0].endpoint_ok, Some(false));
        assert_eq!(plan.attempts[1].endpoint_ok, None);
        assert!(plan.attempts.iter().all(|w| w.disable_endpoint.is_none()));
    }

    #[test]
    fn a_deferral_keeps_its_attempt_and_lane_and_asks_for_a_park() {
        let batch = [Finished {
            job_id: None,
            outcome: Outcome::Deferred {
                delivery_id: DeliveryId::from("dlv_a"),
                attempt: 1,
                at_ms: 7_000,
                park: Some("https://x:443/h".into()),
            },
        }];
        let (plan, parks) = plan(&batch, 5, rules(1));
        assert!(plan.finished_jobs.is_empty() && plan.attempts.is_empty());
        let d = &plan.deferrals[0];
        assert_eq!(
            (d.attempt, d.job.lane, d.job.job.attempt),
            (1, Lane::First, 1)
        );
        assert_eq!(parks, [("https://x:443/h".to_string(), 7_000)]);
    }

    #[test]
    fn next_after_reads_the_exchange() {
        let p = policy(3);
        let ok = exchanged(Some(204), None);
        assert_eq!(next_after(&p, 1, ok, 0, 0.5), Next::Succeeded);
        let gone = exchanged(Some(410), Some(AttemptErrorKind::Status));
        assert_eq!(
            next_after(&p, 1, gone, 0, 0.5),
            Next::Dead {
                reason: DeadReason::Gone
            }
        );
        let refused = exchanged(None, Some(AttemptErrorKind::RejectedTarget));
        assert_eq!(
            next_after(&p, 1, refused, 0, 0.5),
            Next::Dead {
                reason: DeadReason::RejectedTarget
            }
        );
        let failed = exchanged(Some(500), Some(AttemptErrorKind::Status));
        assert_eq!(
            next_after(&p, 1, failed, 1_000, 0.5),
            Next::Retry { at_ms: 6_000 }
        );
        assert_eq!(
            next_after(&p, 3, failed, 1_000, 0.5),
            Next::Dead {
                reason: DeadReason::Exhausted
            }
        );
        let redirect = exchanged(Some(302), Some(AttemptErrorKind::Redirect));
        assert!(matches!(
            next_after(&p, 1, redirect, 0, 0.5),
            Next::Retry { .. }
        ));
    }

    fn any_next() -> impl Strategy<Value = Next> {
        prop_oneof![
            Just(Next::Succeeded),
            (0i64..1 << 40).prop_map(|at_ms| Next::Retry { at_ms }),
            proptest::sample::select(DeadReason::ALL).prop_map(|reason| Next::Dead { reason }),
        ]
    }

    proptest! {
        #[test]
        fn every_outcome_gets_exactly_one_entry_and_consistent_effects(
            items in proptest::collection::vec((1i64..50, any_next(), any::<bool>()), 0..40),
            now in 0i64..1 << 40,
        ) {
            let batch: Vec<Finished> = items
                .iter()
                .enumerate()
                .map(|(i, (attempt, next, deferred))| {
                    let id = DeliveryId::from(format!("dlv_{i}"));
                    let outcome = if *deferred {
                        Outcome::Deferred { delivery_id: id, attempt: *attempt, at_ms: now + 1, park: None }
                    } else {
                        Outcome::Attempted { delivery_id: id, record: record(*attempt), next: next.clone() }
                    };
                    Finished { job_id: Some(format!("job-{i}")), outcome }
                })
                .collect();
            let (plan, _) = plan(&batch, now, rules(10));
            prop_assert_eq!(plan.finished_jobs.len(), batch.len());
            prop_assert_eq!(plan.attempts.len() + plan.deferrals.len(), batch.len());
            for w in &plan.attempts {
                // A job is queued exactly when the delivery stays pending, as
                // the next attempt, in the retry lane.
                prop_assert_eq!(w.next_job.is_some(), w.status == DeliveryStatus::Pending);
                if let Some(j) = &w.next_job {
                    prop_assert_eq!(j.job.attempt, w.record.attempt + 1);
                    prop_assert_eq!(j.lane, Lane::Retry);
                    prop_assert_eq!(Some(j.run_at_ms), w.next_attempt_at);
                }
                // Dead exactly when dead-lettered; finished ones have a completion time.
                prop_assert_eq!(w.dead_letter.is_some(), w.status == DeliveryStatus::Dead);
                prop_assert_eq!(w.completed_at.is_some(), w.status != DeliveryStatus::Pending);
                prop_assert_eq!(w.disable_endpoint.is_some(), w.dead_letter == Some(DeadReason::Gone));
                if w.status == DeliveryStatus::Succeeded {
                    prop_assert_eq!(w.endpoint_ok, Some(true));
                }
            }
            for d in &plan.deferrals {
                prop_assert_eq!(d.job.job.attempt, d.attempt);
                prop_assert_eq!(d.job.lane, Lane::for_attempt(d.attempt));
            }
        }
    }
}
