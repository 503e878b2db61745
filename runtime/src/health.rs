//! Liveness: whether a service's loops are making progress, for `/healthz`.
//!
//! A loop that waits for work is idle, however long it waits; a loop that took work and has
//! not finished it is busy. `/healthz` fails once a loop has been busy past the bound: the
//! consumer stuck on a batch, the relay stuck on a publish. Restarting such a process is
//! what an orchestrator's liveness probe is for; whether it can reach Kafka or its database
//! is `/readyz`'s question, and restarting would not help with that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The loops of one process and how long each may stay busy.
#[derive(Clone, Debug)]
pub struct Liveness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    bound: Duration,
    loops: Mutex<Vec<LoopBeat>>,
}

/// One loop's state, written by the loop, read by `/healthz`.
#[derive(Clone, Debug)]
pub struct LoopBeat {
    name: &'static str,
    started: Instant,
    /// Milliseconds after `started` plus one at which the loop became busy; 0 while idle.
    busy_since: Arc<AtomicU64>,
}

/// A loop found busy past the bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub name: &'static str,
    pub busy_for: Duration,
}

impl Liveness {
    pub fn new(bound: Duration) -> Self {
        Liveness {
            inner: Arc::new(Inner {
                started: Instant::now(),
                bound,
                loops: Mutex::default(),
            }),
        }
    }

    pub fn bound(&self) -> Duration {
        self.inner.bound
    }

    /// Registers a loop by name (`consumer`, `relay`).
    pub fn register(&self, name: &'static str) -> LoopBeat {
        let beat = LoopBeat {
            name,
            started: self.inner.started,
            busy_since: Arc::default(),
        };
        self.inner
            .loops
            .lock()
            .expect("liveness lock poisoned")
            .push(beat.clone());
        beat
    }

    /// The loops busy for longer than the bound.
    pub fn stuck(&self) -> Vec<Stuck> {
        let now = self.inner.started.elapsed();
        let loops = self.inner.loops.lock().expect("liveness lock poisoned");
        loops
            .iter()
            .filter_map(|beat| {
                let since = beat.busy_since.load(Ordering::Relaxed).checked_sub(1)?;
                let busy_for = now.saturating_sub(Duration::from_millis(since));
                (busy_for > self.inner.bound).then_some(Stuck {
                    name: beat.name,
                    busy_for,
                })
            })
            .collect()
    }
}

impl LoopBeat {
    /// Marks the loop busy until the returned guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        let since = self.started.elapsed().as_millis() as u64 + 1;
        self.busy_since.store(since, Ordering::Relaxed);
        Busy { beat: self }
    }
}

/// The loop is busy while this lives.
pub struct Busy<'a> {
    beat: &'a LoopBeat,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.beat.busy_since.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_waiting_for_work_is_never_stuck() {
        let liveness = Liveness::new(Duration::ZERO);
        let _consumer = liveness.register("consumer");
        std::thread::sleep(Duration::from_millis(5));
        assert!(liveness.stuck().is_empty());
    }

    #[test]
    fn a_loop_busy_past_the_bound_is_stuck_until_it_finishes() {
        let liveness = Liveness::new(Duration::from_millis(20));
        let relay = liveness.register("relay");
        let busy = relay.busy();
        assert!(liveness.stuck().is_empty(), "not yet past the bound");
        let deadline = Instant::now() + Duration::from_secs(5);
        while liveness.stuck().is_empty() {
            assert!(Instant::now() < deadline, "never reported stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(liveness.stuck()[0].name, "relay");
        drop(busy);
        assert!(liveness.stuck().is_empty());
    }
}
