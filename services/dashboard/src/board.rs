//! What the page shows, kept from what Kafka says: the instances' heartbeats (their groups,
//! partitions and lag) and the events about recent orders. Pure state, fed by
//! the dashboard's Kafka reader, read as a [`Snapshot`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_runtime::presence::{Heartbeat, Status};
use shop_runtime::{Envelope, Event, catalog};
use utoipa::ToSchema;
use uuid::Uuid;

/// Silence after which an instance that did not say it was stopping is shown as gone: three
/// missed heartbeats.
pub const GONE_AFTER: Duration = Duration::from_secs(3);
/// How long a gone or stopped instance stays on the page, so a newcomer sees what happened.
pub const FORGET_AFTER: Duration = Duration::from_secs(30);
/// Orders shown.
pub const RECENT_ORDERS: usize = 20;
/// Events per second are averaged over this window.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The groups in the order the saga meets them; any other group comes after, by name.
const GROUP_ORDER: [&str; 5] = [
    "order-service",
    "inventory-service",
    "payment-service",
    "email-service",
    "analytics-service",
];

#[derive(Debug, Default)]
pub struct Board {
    /// Partitions of each topic the groups read.
    topics: BTreeMap<String, i32>,
    instances: BTreeMap<String, Instance>,
    /// Newest last.
    orders: VecDeque<OrderView>,
}

#[derive(Debug)]
struct Instance {
    last: Heartbeat,
    seen: Instant,
    /// (when, processed) samples within the rate window, oldest first.
    samples: VecDeque<(Instant, u64)>,
}

impl Instance {
    fn status(&self, now: Instant) -> &'static str {
        match self.last.status {
            Status::Stopping => "stopping",
            Status::Running if now.duration_since(self.seen) > GONE_AFTER => "gone",
            Status::Running => "running",
        }
    }

    fn events_per_second(&self, now: Instant) -> f64 {
        if self.status(now) != "running" {
            return 0.0;
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                n1.saturating_sub(*n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// Everything the page shows at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub generated_at: DateTime<Utc>,
    pub topics: Vec<TopicView>,
    /// In the order the saga meets them, then any other group by name.
    pub groups: Vec<GroupView>,
    /// The last 20 orders placed, newest first.
    pub recent_orders: Vec<OrderView>,
    pub load: crate::load::LoadStatus,
}

/// A topic the groups read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopicView {
    pub name: String,
    pub partitions: i32,
}

/// A consumer group, as its instances' heartbeats describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub group: String,
    pub topics: Vec<String>,
    /// Its instances' together, over the last 5 seconds.
    pub events_per_second: f64,
    /// Running, stopping and gone, seen within the last 30 seconds.
    pub instances: Vec<InstanceView>,
    /// Every partition of the group's topics, with the running instance that holds it.
    pub partitions: Vec<PartitionView>,
}

/// An instance of a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    pub instance_id: String,
    /// `running`, `stopping` (it left its group) or `gone` (silent: killed, or cut off).
    pub status: String,
    /// Since its last heartbeat.
    pub last_seen_secs: f64,
    /// Over the last 5 seconds; 0 unless `running`.
    pub events_per_second: f64,
    /// What its last heartbeat said it holds.
    pub partitions: Vec<PartitionLag>,
}

/// A partition an instance holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Events not handled yet; null until librdkafka first reports it.
    pub lag: Option<i64>,
}

/// A partition of a group's topic, and who holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    /// The running instance that holds it; null while none does.
    pub owner: Option<String>,
    pub lag: Option<i64>,
}

/// A recent order and what the services did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub order_id: Uuid,
    pub placed_at: DateTime<Utc>,
    /// The amount and its currency, e.g. `59.99 EUR`.
    pub total: String,
    /// `pending`, `confirmed` or `cancelled`.
    pub status: String,
    /// Why it was cancelled.
    pub status_reason: Option<String>,
    /// Oldest first.
    pub steps: Vec<Step>,
}

/// An event about an order: published on its topic, or handled by an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// `published`: the event appeared on its topic; `handled`: an instance of `service`
    /// committed its effects.
    pub kind: String,
    pub service: String,
    pub instance_id: Option<String>,
    pub event_type: String,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub at: DateTime<Utc>,
}

impl Board {
    pub fn set_topics(&mut self, topics: impl IntoIterator<Item = (String, i32)>) {
        self.topics = topics.into_iter().collect();
    }

    /// An instance's heartbeat, received `now`.
    pub fn heartbeat(&mut self, heartbeat: Heartbeat, now: Instant) {
        for handled in &heartbeat.handled {
            let Some(order) = self.order_mut(handled.order_id) else {
                continue;
            };
            let topic = topic_of(&handled.event_type);
            let partition = topic.and_then(|t| order.partition_on(t));
            order.steps.push(Step {
                kind: "handled".to_owned(),
                service: heartbeat.service.clone(),
                instance_id: Some(heartbeat.instance_id.clone()),
                event_type: handled.event_type.clone(),
                topic: topic.map(str::to_owned),
                partition,
                at: handled.at,
            });
            order.steps.sort_by_key(|step| step.at);
        }
        let entry = self
            .instances
            .entry(heartbeat.instance_id.clone())
            .or_insert_with(|| Instance {
                last: heartbeat.clone(),
                seen: now,
                samples: VecDeque::new(),
            });
        entry.samples.push_back((now, heartbeat.processed));
        while entry
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            entry.samples.pop_front();
        }
        entry.last = heartbeat;
        entry.seen = now;
    }

    /// An event seen on `topic`'s `partition`.
    pub fn event(&mut self, event: &Envelope<Event>, topic: &str, partition: i32) {
        if let Event::OrderPlaced(placed) = &event.data {
            if self.order_mut(placed.order_id).is_some() {
                return;
            }
            if self.orders.len() == RECENT_ORDERS {
                self.orders.pop_front();
            }
            self.orders.push_back(OrderView {
                order_id: placed.order_id,
                placed_at: event.meta.occurred_at,
                total: catalog::money(placed.total_cents, &placed.currency),
                status: "pending".to_owned(),
                status_reason: None,
                steps: Vec::new(),
            });
        }
        let Some(order) = self.order_mut(event.meta.order_id) else {
            return;
        };
        match &event.data {
            Event::OrderConfirmed(_) => order.status = "confirmed".to_owned(),
            Event::OrderCancelled(cancelled) => {
                order.status = "cancelled".to_owned();
                order.status_reason = Some(cancelled.reason.clone());
            }
            _ => {}
        }
        order.steps.push(Step {
            kind: "published".to_owned(),
            service: publisher_of(topic).to_owned(),
            instance_id: None,
            event_type: event.meta.event_type.clone(),
            topic: Some(topic.to_owned()),
            partition: Some(partition),
            at: event.meta.occurred_at,
        });
        order.steps.sort_by_key(|step| step.at);
    }

    fn order_mut(&mut self, order_id: Uuid) -> Option<&mut OrderView> {
        self.orders
            .iter_mut()
            .find(|order| order.order_id == order_id)
    }

    /// What the page shows `now`; instances silent for [`FORGET_AFTER`] are dropped.
    pub fn snapshot(&mut self, now: Instant, load: crate::load::LoadStatus) -> Snapshot {
        self.instances
            .retain(|_, instance| now.duration_since(instance.seen) <= FORGET_AFTER);
        let mut groups: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for instance in self.instances.values() {
            groups
                .entry(&instance.last.group)
                .or_default()
                .push(instance);
        }
        let mut views: Vec<GroupView> = groups
            .into_iter()
            .map(|(group, instances)| self.group_view(group, &instances, now))
            .collect();
        views.sort_by_key(|view| {
            let rank = GROUP_ORDER.iter().position(|g| *g == view.group);
            (rank.unwrap_or(GROUP_ORDER.len()), view.group.clone())
        });
        Snapshot {
            generated_at: Utc::now(),
            topics: self
                .topics
                .iter()
                .map(|(name, partitions)| TopicView {
                    name: name.clone(),
                    partitions: *partitions,
                })
                .collect(),
            groups: views,
            recent_orders: self.orders.iter().rev().cloned().collect(),
            load,
        }
    }

    fn group_view(&self, group: &str, instances: &[&Instance], now: Instant) -> GroupView {
        // The topics its newest heartbeat names.
        let topics = instances
            .iter()
            .max_by_key(|instance| instance.seen)
            .map(|instance| instance.last.topics.clone())
            .unwrap_or_default();
        // Who holds what: only a running instance holds anything. Should two claim one
        // partition for a moment (a rebalance between their heartbeats), the latest says.
        let mut owners: HashMap<(&str, i32), (&Instance, Option<i64>)> = HashMap::new();
        for instance in instances.iter().filter(|i| i.status(now) == "running") {
            for held in &instance.last.partitions {
                let key = (held.topic.as_str(), held.partition);
                let newer = owners
                    .get(&key)
                    .is_none_or(|(other, _)| other.last.at < instance.last.at);
                if newer {
                    owners.insert(key, (instance, held.lag));
                }
            }
        }
        let mut partitions = Vec::new();
        for topic in &topics {
            let count = self.topics.get(topic).copied().unwrap_or_else(|| {
                // Not in the metadata yet: as many as the instances report.
                owners
                    .keys()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, p)| p + 1)
                    .max()
                    .unwrap_or(0)
            });
            for partition in 0..count {
                let owner = owners.get(&(topic.as_str(), partition));
                partitions.push(PartitionView {
                    topic: topic.clone(),
                    partition,
                    owner: owner.map(|(instance, _)| instance.last.instance_id.clone()),
                    lag: owner.and_then(|(_, lag)| *lag),
                });
            }
        }
        let mut instance_views: Vec<InstanceView> = instances
            .iter()
            .map(|instance| InstanceView {
                instance_id: instance.last.instance_id.clone(),
                status: instance.status(now).to_owned(),
                last_seen_secs: now.duration_since(instance.seen).as_secs_f64(),
                events_per_second: instance.events_per_second(now),
                partitions: instance
                    .last
                    .partitions
                    .iter()
                    .map(|p| PartitionLag {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        lag: p.lag,
                    })
                    .collect(),
            })
            .collect();
        instance_views.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        GroupView {
            group: group.to_owned(),
            topics,
            events_per_second: instance_views.iter().map(|i| i.events_per_second).sum(),
            instances: instance_views,
            partitions,
        }
    }
}

impl OrderView {
    /// The partition of `topic` the order's events went to, once one was seen.
    fn partition_on(&self, topic: &str) -> Option<i32> {
        self.steps
            .iter()
            .find(|step| step.kind == "published" && step.topic.as_deref() == Some(topic))
            .and_then(|step| step.partition)
    }
}

/// The topic an event type is published on.
fn topic_of(event_type: &str) -> Option<&'static str> {
    use shop_runtime::topics::{INVENTORY, ORDERS, PAYMENTS};
    match event_type {
        "order_placed" | "order_confirmed" | "order_cancelled" => Some(ORDERS),
        "stock_reserved" | "stock_rejected" | "stock_released" => Some(INVENTORY),
        "payment_authorized" | "payment_declined" | "payment_captured" | "payment_voided" => {
            Some(PAYMENTS)
        }
        _ => None,
    }
}

/// The service that owns (publishes to) a topic.
fn publisher_of(topic: &str) -> &'static str {
    use shop_runtime::topics::{INVENTORY, PAYMENTS};
    match topic {
        INVENTORY => "inventory-service",
        PAYMENTS => "payment-service",
        _ => "order-service",
    }
}

#[cfg(test)]
mod tests {
    use shop_runtime::kafka::AssignedPartition;
    use shop_runtime::presence::Handled;
    use shop_runtime::{OrderConfirmed, OrderLine, OrderPlaced};

    use super::*;

    fn heartbeat(group: &str, instance: &str, partitions: &[i32], processed: u64) -> Heartbeat {
        Heartbeat {
            service: group.to_owned(),
            group: group.to_owned(),
            instance_id: instance.to_owned(),
            topics: vec!["orders".to_owned()],
            status: Status::Running,
            at: Utc::now(),
            partitions: partitions
                .iter()
                .map(|p| AssignedPartition {
                    topic: "orders".to_owned(),
                    partition: *p,
                    lag: Some(i64::from(*p)),
                })
                .collect(),
            processed,
            handled: Vec::new(),
        }
    }

    fn decoded(json: Vec<u8>) -> Envelope<Event> {
        Envelope::decode(Some(&json)).unwrap()
    }

    fn board() -> Board {
        let mut board = Board::default();
        board.set_topics([("orders".to_owned(), 6)]);
        board
    }

    fn idle() -> crate::load::LoadStatus {
        crate::load::LoadStatus::default()
    }

    #[test]
    fn two_instances_of_a_group_share_its_partitions_and_each_group_has_all_of_them() {
        let mut board = board();
        let now = Instant::now();
        board.heartbeat(heartbeat("inventory-service", "inv-a", &[0, 1, 2], 10), now);
        board.heartbeat(heartbeat("inventory-service", "inv-b", &[3, 4, 5], 10), now);
        board.heartbeat(
            heartbeat("email-service", "email-a", &[0, 1, 2, 3, 4, 5], 10),
            now,
        );

        let snapshot = board.snapshot(now, idle());

        let names: Vec<_> = snapshot.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(names, ["inventory-service", "email-service"], "saga order");
        let inventory = &snapshot.groups[0];
        assert_eq!(inventory.instances.len(), 2);
        let owners: Vec<_> = inventory
            .partitions
            .iter()
            .map(|p| p.owner.as_deref().unwrap())
            .collect();
        assert_eq!(
            owners,
            ["inv-a", "inv-a", "inv-a", "inv-b", "inv-b", "inv-b"]
        );
        assert_eq!(inventory.partitions[4].lag, Some(4));
        let email = &snapshot.groups[1];
        assert!(
            email
                .partitions
                .iter()
                .all(|p| p.owner.as_deref() == Some("email-a"))
        );
    }

    #[test]
    fn a_silent_instance_is_gone_holds_nothing_and_is_forgotten_later() {
        let mut board = board();
        let start = Instant::now();
        board.heartbeat(
            heartbeat("inventory-service", "inv-a", &[0, 1, 2], 0),
            start,
        );
        board.heartbeat(
            heartbeat("inventory-service", "inv-b", &[3, 4, 5], 0),
            start,
        );
        let later = start + GONE_AFTER + Duration::from_secs(1);
        // Only inv-b speaks again, now holding everything after the rebalance.
        board.heartbeat(
            heartbeat("inventory-service", "inv-b", &[0, 1, 2, 3, 4, 5], 0),
            later,
        );

        let snapshot = board.snapshot(later, idle());
        let inventory = &snapshot.groups[0];
        let a = &inventory.instances[0];
        assert_eq!(
            (a.instance_id.as_str(), a.status.as_str()),
            ("inv-a", "gone")
        );
        assert!(
            inventory
                .partitions
                .iter()
                .all(|p| p.owner.as_deref() == Some("inv-b"))
        );

        let much_later = start + FORGET_AFTER + Duration::from_secs(1);
        board.heartbeat(
            heartbeat("inventory-service", "inv-b", &[0, 1, 2, 3, 4, 5], 0),
            much_later,
        );
        let snapshot = board.snapshot(much_later, idle());
        assert_eq!(snapshot.groups[0].instances.len(), 1);
    }

    #[test]
    fn events_per_second_come_from_the_processed_counts_over_the_last_seconds() {
        let mut board = board();
        let start = Instant::now();
        board.heartbeat(heartbeat("email-service", "email-a", &[0], 100), start);
        let later = start + Duration::from_secs(2);
        board.heartbeat(heartbeat("email-service", "email-a", &[0], 140), later);
        let snapshot = board.snapshot(later, idle());
        assert_eq!(snapshot.groups[0].events_per_second, 20.0);
    }

    #[test]
    fn an_order_collects_what_was_published_and_who_handled_it_until_it_ends() {
        let mut board = board();
        let order_id = Uuid::new_v4();
        let at = Utc::now();
        let placed = Envelope::new(
            OrderPlaced {
                order_id,
                customer_id: "c".to_owned(),
                customer_email: "c@example.com".to_owned(),
                items: vec![OrderLine {
                    sku: "KB-001".to_owned(),
                    quantity: 1,
                    unit_price_cents: 5_999,
                }],
                total_cents: 5_999,
                currency: "EUR".to_owned(),
            },
            at,
        );
        board.event(&decoded(placed.to_json()), "orders", 3);
        let mut beat = heartbeat("inventory-service", "inv-a", &[3], 1);
        beat.handled.push(Handled {
            order_id,
            event_type: "order_placed".to_owned(),
            at: at + chrono::TimeDelta::milliseconds(5),
        });
        board.heartbeat(beat, Instant::now());
        let confirmed = Envelope::new(
            OrderConfirmed {
                order_id,
                customer_id: "c".to_owned(),
                customer_email: "c@example.com".to_owned(),
                items: placed.data.items.clone(),
                total_cents: 5_999,
                currency: "EUR".to_owned(),
                placed_at: at,
            },
            at + chrono::TimeDelta::milliseconds(10),
        );
        board.event(&decoded(confirmed.to_json()), "orders", 3);

        let snapshot = board.snapshot(Instant::now(), idle());
        let order = &snapshot.recent_orders[0];
        assert_eq!(order.status, "confirmed");
        assert_eq!(order.total, "59.99 EUR");
        let steps: Vec<_> = order
            .steps
            .iter()
            .map(|s| {
                (
                    s.kind.as_str(),
                    s.service.as_str(),
                    s.event_type.as_str(),
                    s.partition,
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("published", "order-service", "order_placed", Some(3)),
                ("handled", "inventory-service", "order_placed", Some(3)),
                ("published", "order-service", "order_confirmed", Some(3)),
            ]
        );
    }
}
