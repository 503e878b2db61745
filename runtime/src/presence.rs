//! Presence: every consumer instance says, once a second on the `presence` topic, which group
//! it is in, which partitions it holds, how far behind it is on each, and which orders it
//! handled since it last said so. The dashboard reads nothing else to draw the groups, so
//! what it shows is what the instances themselves report, through Kafka like everything else.
//!
//! An instance that stops cleanly says so last (`stopping`); one that is killed simply falls
//! silent, and readers tell it is gone by its silence.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::ServiceSettings;
use crate::envelope::{Envelope, Event};
use crate::kafka::{
    AssignedPartition, Assignment, EventConsumer, EventProducer, Handler, OutgoingRecord,
};
use crate::metrics::ConsumerMetrics;
use crate::topics;

/// How often an instance reports.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Handled events kept between two heartbeats; under load only the latest are reported.
const MAX_HANDLED: usize = 64;

/// One instance's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub service: String,
    pub group: String,
    pub instance_id: String,
    pub topics: Vec<String>,
    pub status: Status,
    pub at: DateTime<Utc>,
    pub partitions: Vec<AssignedPartition>,
    /// Events this instance has handled since it started.
    pub processed: u64,
    /// The latest events it handled since its previous heartbeat, oldest first.
    pub handled: Vec<Handled>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    /// Its last word: it has left its group.
    Stopping,
}

/// An event about an order whose effects an instance committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handled {
    pub order_id: Uuid,
    pub event_type: String,
    pub at: DateTime<Utc>,
}

/// The events a consumer handled lately, shared with its heartbeat.
#[derive(Clone, Debug, Default)]
pub struct RecentlyHandled {
    events: Arc<Mutex<VecDeque<Handled>>>,
}

impl RecentlyHandled {
    pub(crate) fn record(&self, events: &[&Envelope<Event>]) {
        let at = Utc::now();
        let mut recent = self.events.lock().expect("presence lock poisoned");
        for event in events.iter().rev().take(MAX_HANDLED).rev() {
            if recent.len() == MAX_HANDLED {
                recent.pop_front();
            }
            recent.push_back(Handled {
                order_id: event.meta.order_id,
                event_type: event.meta.event_type.clone(),
                at,
            });
        }
    }

    fn take(&self) -> Vec<Handled> {
        let mut recent = self.events.lock().expect("presence lock poisoned");
        recent.drain(..).collect()
    }
}

/// Sends an instance's heartbeat every [`INTERVAL`] until stopped, then its `stopping`.
pub struct Presence {
    pub producer: EventProducer,
    pub service: &'static str,
    pub group: String,
    pub instance_id: String,
    pub topics: &'static [&'static str],
    pub assignment: Assignment,
    pub metrics: ConsumerMetrics,
    pub handled: RecentlyHandled,
}

impl Presence {
    /// The heartbeat of the instance `settings` describe, reporting `consumer`'s partitions
    /// and what it handled.
    pub fn of<H: Handler>(
        consumer: &EventConsumer<H>,
        producer: EventProducer,
        settings: &ServiceSettings,
        metrics: ConsumerMetrics,
    ) -> Self {
        Presence {
            producer,
            service: settings.name,
            group: settings.kafka.group_id.clone(),
            instance_id: settings.instance_id.clone(),
            topics: H::TOPICS,
            assignment: consumer.assignment(),
            metrics,
            handled: consumer.recently_handled(),
        }
    }

    /// Never fails: a heartbeat the broker does not take is logged and skipped, since the
    /// next one says everything again.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            self.send(self.heartbeat(Status::Running)).await;
        }
        let mut last = self.heartbeat(Status::Stopping);
        last.partitions.clear();
        self.send(last).await;
        Ok(())
    }

    fn heartbeat(&self, status: Status) -> Heartbeat {
        let snapshot = self.assignment.snapshot(&self.group, &self.instance_id);
        Heartbeat {
            service: self.service.to_owned(),
            group: self.group.clone(),
            instance_id: self.instance_id.clone(),
            topics: self.topics.iter().map(|t| (*t).to_owned()).collect(),
            status,
            at: Utc::now(),
            partitions: snapshot.partitions,
            processed: self.metrics.processed(),
            handled: self.handled.take(),
        }
    }

    async fn send(&self, heartbeat: Heartbeat) {
        let payload = serde_json::to_vec(&heartbeat).expect("a heartbeat always serializes");
        let record = OutgoingRecord {
            topic: topics::PRESENCE,
            key: self.instance_id.as_bytes(),
            payload: &payload,
            headers: &[],
        };
        match tokio::time::timeout(INTERVAL * 2, self.producer.send(record)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "heartbeat not sent"),
            Err(_) => tracing::debug!("heartbeat not acknowledged in time"),
        }
    }
}
