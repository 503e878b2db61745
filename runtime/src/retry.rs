//! One retry policy for every loop that waits: exponential backoff with jitter, from
//! `backon`, and a rule for giving up.
//!
//! A loop that retries runs its attempt through [`backon::Retryable::retry`] with one of the
//! named policies below; what it does between attempts (log the error, count a metric) goes
//! in `.notify`, which errors are not worth another attempt in `.when`. A loop that honours a
//! shutdown sleeps with [`sleep_until_cancelled`], and begins each attempt through
//! [`Attempts::begin`], so that no retry follows once the shutdown has begun.
//!
//! Every delay is jittered (backon adds a random fraction of it): `base × (1 + r)`, `r`
//! uniform in [0, 1), where `base` starts at `min_delay` and is multiplied by `factor` after
//! each retry, up to `max_delay`. A delay therefore lies in [base, 2 × base), and instances
//! that failed together (a broker restart) do not all come back at the same moment.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// `.retry(policy)` on an async closure; here so a crate using the policies needs no
/// dependency on backon of its own.
pub use backon::Retryable;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// When a retry stops and hands back the last error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// After this many attempts in all, the first included.
    Attempts(u32),
    /// This long after the first attempt began: the sleep before the last attempt is cut short
    /// to end at the deadline, and no attempt begins after it.
    Deadline(Duration),
    /// Never: only the caller's shutdown ends it.
    Never,
}

/// Delays between attempts, and when to give up. See the module for how a delay is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The first delay, before jitter.
    pub min_delay: Duration,
    /// The most a delay grows to, before jitter (which adds up to as much again).
    pub max_delay: Duration,
    /// What each delay is multiplied by for the next.
    pub factor: f32,
    pub give_up: GiveUp,
}

/// Waiting at start-up for a dependency to come up (Kafka answering, the topics created).
///
/// 100 ms, doubling, capped at 500 ms; jittered, the delays are 0.1–0.2 s, 0.2–0.4 s, then
/// 0.4–0.8 s and 0.5–1 s each. Gives up `deadline` after the first attempt
/// (`STARTUP_TIMEOUT_SECS`).
pub const fn startup(deadline: Duration) -> Policy {
    Policy {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        factor: 2.0,
        give_up: GiveUp::Deadline(deadline),
    }
}

/// A transient failure of one event's handling (the database busy or away, the mail server
/// down), before the event is parked on the dead-letter topic.
///
/// Five attempts; 100 ms, doubling, capped at 2.5 s; jittered, the four delays are
/// 0.1–0.2 s, 0.2–0.4 s, 0.4–0.8 s and 0.8–1.6 s: an event that keeps failing holds up its
/// partition for 1.5–3 s of waiting.
pub const fn transient() -> Policy {
    Policy {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(2_500),
        factor: 2.0,
        give_up: GiveUp::Attempts(5),
    }
}

/// Waiting out an outage that nothing can go on without (the outbox relay's publish, parking
/// a message on the dead-letter topic): never gives up; only shutdown ends it.
///
/// 250 ms, doubling, capped at 2.5 s; jittered, the delays are 0.25–0.5 s, 0.5–1 s, 1–2 s,
/// 2–4 s, then 2.5–5 s each.
pub const fn persistent() -> Policy {
    Policy {
        min_delay: Duration::from_millis(250),
        max_delay: Duration::from_millis(2_500),
        factor: 2.0,
        give_up: GiveUp::Never,
    }
}

impl Policy {
    /// How many attempts the policy makes at most, if it counts them.
    pub fn max_attempts(&self) -> Option<u32> {
        match self.give_up {
            GiveUp::Attempts(n) => Some(n),
            GiveUp::Deadline(_) | GiveUp::Never => None,
        }
    }
}

impl BackoffBuilder for Policy {
    type Backoff = Delays;

    /// Called by [`backon::Retryable::retry`] before the first attempt: a deadline counts
    /// from here.
    fn build(self) -> Delays {
        let jittered = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_jitter();
        let (jittered, deadline) = match self.give_up {
            // Attempts, not delays: n attempts have n - 1 delays between them.
            GiveUp::Attempts(n) => (jittered.with_max_times(n.saturating_sub(1) as usize), None),
            GiveUp::Deadline(after) => (jittered.without_max_times(), Some(Instant::now() + after)),
            GiveUp::Never => (jittered.without_max_times(), None),
        };
        Delays {
            jittered: jittered.build(),
            deadline,
        }
    }
}

/// The delays of one retry, in order; `None` when it is time to give up.
#[derive(Debug)]
pub struct Delays {
    jittered: ExponentialBackoff,
    deadline: Option<Instant>,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.jittered.next()?;
        let Some(deadline) = self.deadline else {
            return Some(delay);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| delay.min(left))
    }
}

/// backon's sleeper for a loop that honours a shutdown: a sleep ends early once `shutdown` is
/// cancelled. The attempt that follows must not run: see [`Attempts`].
pub fn sleep_until_cancelled(shutdown: &CancellationToken) -> UntilCancelled {
    UntilCancelled(shutdown.clone())
}

/// See [`sleep_until_cancelled`].
#[derive(Debug, Clone)]
pub struct UntilCancelled(CancellationToken);

impl backon::Sleeper for UntilCancelled {
    type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn sleep(&self, delay: Duration) -> Self::Sleep {
        let shutdown = self.0.clone();
        Box::pin(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(delay) => {}
            }
        })
    }
}

/// The attempts of a retry that honours a shutdown. The first always runs (the work in hand
/// is finished); once the shutdown has begun, no other does, so a wait cut short by
/// [`sleep_until_cancelled`] ends the retry instead of trying again.
#[derive(Debug)]
pub struct Attempts<'a> {
    shutdown: &'a CancellationToken,
    made: AtomicU32,
}

impl<'a> Attempts<'a> {
    pub fn until(shutdown: &'a CancellationToken) -> Self {
        Attempts {
            shutdown,
            made: AtomicU32::new(0),
        }
    }

    /// Whether the next attempt may run, counting it if so: called first thing in the
    /// attempt, which returns an error at once on `false`.
    pub fn begin(&self) -> bool {
        if self.made() > 0 && self.stopped() {
            return false;
        }
        self.made.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Attempts made so far.
    pub fn made(&self) -> u32 {
        self.made.load(Ordering::Relaxed)
    }

    /// Whether the shutdown has begun: `.when` then refuses a retry.
    pub fn stopped(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Each delay of a policy's first `n`, with the range its jitter may put it in.
    fn delays_within(policy: Policy, ranges: &[(u64, u64)]) {
        // Many draws, so a jitter outside its range would show.
        for _ in 0..1_000 {
            let delays: Vec<Duration> = policy.build().take(ranges.len()).collect();
            assert_eq!(delays.len(), ranges.len(), "{policy:?} gave up early");
            for (delay, &(low, high)) in delays.iter().zip(ranges) {
                assert!(
                    ms(low) <= *delay && *delay < ms(high),
                    "{delay:?} not in {low}..{high} ms: {delays:?}"
                );
            }
        }
    }

    #[test]
    fn a_transient_failure_is_retried_four_times_with_jittered_doubling_delays() {
        delays_within(
            transient(),
            &[(100, 200), (200, 400), (400, 800), (800, 1_600)],
        );
        assert_eq!(transient().build().count(), 4, "five attempts, four delays");
        assert_eq!(transient().max_attempts(), Some(5));
    }

    #[test]
    fn the_jitter_spreads_delays_rather_than_repeating_one() {
        let firsts: std::collections::HashSet<Duration> = (0..100)
            .filter_map(|_| transient().build().next())
            .collect();
        assert!(
            firsts.len() > 50,
            "only {} distinct first delays",
            firsts.len()
        );
    }

    #[test]
    fn a_persistent_retry_never_gives_up_and_never_waits_more_than_five_seconds() {
        delays_within(
            persistent(),
            &[
                (250, 500),
                (500, 1_000),
                (1_000, 2_000),
                (2_000, 4_000),
                (2_500, 5_000),
            ],
        );
        let mut delays = persistent().build();
        for _ in 0..10_000 {
            let delay = delays.next().expect("never gives up");
            assert!(delay < Duration::from_secs(5), "{delay:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_startup_wait_gives_up_at_its_deadline_and_its_last_sleep_ends_there() {
        let deadline = Duration::from_secs(3);
        let started = Instant::now();
        let mut slept = Vec::new();
        for delay in startup(deadline).build() {
            assert!(delay < Duration::from_secs(1), "{delay:?}");
            slept.push(delay);
            tokio::time::advance(delay).await;
        }
        assert_eq!(started.elapsed(), deadline, "slept {slept:?}");
        assert!(slept.len() >= 4, "{slept:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_makes_every_attempt_and_notifies_each_failure_with_its_delay() {
        let attempts = AtomicU32::new(0);
        let notified = AtomicU32::new(0);
        let started = Instant::now();
        let result: Result<(), &str> = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err("down")
        })
        .retry(transient())
        .notify(|err, delay| {
            assert_eq!(*err, "down");
            assert!(delay >= ms(100), "{delay:?}");
            notified.fetch_add(1, Ordering::Relaxed);
        })
        .await;
        assert_eq!(result, Err("down"));
        assert_eq!(attempts.load(Ordering::Relaxed), 5);
        assert_eq!(notified.load(Ordering::Relaxed), 4);
        // The paused clock moved by exactly the four sleeps: 1.5–3 s.
        let waited = started.elapsed();
        assert!(ms(1_500) <= waited && waited < ms(3_000), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_startup_wait_makes_one_last_attempt_at_its_deadline() {
        let started = Instant::now();
        let last_attempt = std::sync::Mutex::new(started);
        let result: Result<(), &str> = (|| async {
            *last_attempt.lock().unwrap() = Instant::now();
            Err("not yet")
        })
        .retry(startup(Duration::from_secs(2)))
        .await;
        assert_eq!(result, Err("not yet"));
        assert_eq!(
            last_attempt.lock().unwrap().duration_since(started),
            Duration::from_secs(2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_that_honours_shutdown_stops_waiting_and_trying_once_it_is_cancelled() {
        let shutdown = CancellationToken::new();
        let attempts = Attempts::until(&shutdown);
        let tried_after_shutdown = AtomicU32::new(0);
        let started = Instant::now();
        let cancel = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            shutdown.cancel();
        };
        let retry = (|| async {
            if !attempts.begin() {
                return Err::<(), _>("stopped");
            }
            if shutdown.is_cancelled() {
                tried_after_shutdown.fetch_add(1, Ordering::Relaxed);
            }
            Err("down")
        })
        .retry(persistent())
        .sleep(sleep_until_cancelled(&shutdown))
        .when(|_| !attempts.stopped());
        let (result, ()) = tokio::join!(retry, cancel);
        assert_eq!(result, Err("stopped"));
        // The wait in progress ended at the shutdown, and nothing was tried after it.
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(tried_after_shutdown.load(Ordering::Relaxed), 0);
        assert!(attempts.made() >= 4, "{}", attempts.made());
    }

    #[test]
    fn the_first_attempt_runs_even_after_shutdown_and_no_retry_does() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let attempts = Attempts::until(&shutdown);
        assert!(attempts.begin());
        assert!(!attempts.begin());
        assert_eq!(attempts.made(), 1);
    }
}
