//! Who may do what on the Kafka cluster: every principal's topics and consumer group,
//! declared once.
//!
//! Each service authenticates as its own user and is granted exactly what is declared here,
//! nothing more: the topics it writes (its own topic through the outbox, `presence` for its
//! heartbeat, the dead-letter topics of what it reads), the topics it reads, and its consumer
//! group. The services take their subscriptions from here ([`Principal::reads`] is what a
//! handler subscribes to), the compose cluster's ACLs and the Kubernetes `KafkaUser`s are
//! checked against it by tests, and `docs/security.md` shows it as a table.
//!
//! Topics are created by the admin principal (`kafka-init` in compose, `KafkaTopic`s in
//! Kubernetes); no service may create, alter or delete a topic there, and none needs a
//! wildcard or the `All` operation.

use crate::topics;

/// What one principal (one Kafka user) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The user it authenticates as (its SCRAM user, its `KafkaUser`).
    pub user: &'static str,
    /// The consumer group it joins and commits offsets in, if it joins one. A service's
    /// group is its name unless `KAFKA_GROUP_ID` says otherwise, which then needs its own
    /// grant.
    pub group: Option<&'static str>,
    /// Topics it reads (`Read` and `Describe`).
    pub reads: &'static [&'static str],
    /// Topics it produces to (`Write` and `Describe`).
    pub writes: &'static [&'static str],
}

pub const ORDER_SERVICE: Principal = Principal {
    user: "order-service",
    group: Some("order-service"),
    reads: &[topics::INVENTORY, topics::PAYMENTS],
    writes: &[
        topics::ORDERS,
        topics::PRESENCE,
        topics::INVENTORY_DLT,
        topics::PAYMENTS_DLT,
    ],
};

pub const INVENTORY_SERVICE: Principal = Principal {
    user: "inventory-service",
    group: Some("inventory-service"),
    reads: &[topics::ORDERS],
    writes: &[topics::INVENTORY, topics::PRESENCE, topics::ORDERS_DLT],
};

pub const PAYMENT_SERVICE: Principal = Principal {
    user: "payment-service",
    group: Some("payment-service"),
    reads: &[topics::ORDERS],
    writes: &[topics::PAYMENTS, topics::PRESENCE, topics::ORDERS_DLT],
};

pub const EMAIL_SERVICE: Principal = Principal {
    user: "email-service",
    group: Some("email-service"),
    reads: &[topics::ORDERS],
    writes: &[topics::PRESENCE, topics::ORDERS_DLT],
};

pub const ANALYTICS_SERVICE: Principal = Principal {
    user: "analytics-service",
    group: Some("analytics-service"),
    reads: &[topics::ORDERS],
    writes: &[topics::PRESENCE, topics::ORDERS_DLT],
};

/// Read-only, in no group: it watches every instance's heartbeat and the business topics.
pub const DASHBOARD: Principal = Principal {
    user: "dashboard",
    group: None,
    reads: &[
        topics::ORDERS,
        topics::INVENTORY,
        topics::PAYMENTS,
        topics::PRESENCE,
    ],
    writes: &[],
};

/// The operator's dead-letter tool: reads what is parked, replays it to its original topic,
/// and records each replay on the dead-letter topic.
pub const SHOP_DLT: Principal = Principal {
    user: "shop-dlt",
    group: None,
    reads: &[
        topics::ORDERS_DLT,
        topics::INVENTORY_DLT,
        topics::PAYMENTS_DLT,
    ],
    writes: &[
        topics::ORDERS,
        topics::INVENTORY,
        topics::PAYMENTS,
        topics::ORDERS_DLT,
        topics::INVENTORY_DLT,
        topics::PAYMENTS_DLT,
    ],
};

/// Every principal but the admin, which is a super user: it creates the topics, the users
/// and the ACLs (and `shop-ceiling` runs as it, on topics of its own).
pub const PRINCIPALS: [Principal; 7] = [
    ORDER_SERVICE,
    INVENTORY_SERVICE,
    PAYMENT_SERVICE,
    EMAIL_SERVICE,
    ANALYTICS_SERVICE,
    DASHBOARD,
    SHOP_DLT,
];

/// The admin principal's user name.
pub const ADMIN: &str = "admin";

impl Principal {
    /// Every topic it touches, read or written, each once.
    pub fn topics(&self) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = Vec::new();
        for topic in self.reads.iter().chain(self.writes) {
            if !all.contains(topic) {
                all.push(topic);
            }
        }
        all
    }

    /// The principal of the service named `name`, if it is one.
    pub fn of_service(name: &str) -> Option<Principal> {
        PRINCIPALS.into_iter().find(|p| p.user == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumer_may_park_what_it_reads_and_report_its_presence() {
        for principal in PRINCIPALS.iter().filter(|p| p.group.is_some()) {
            for topic in principal.reads {
                let parked = topics::dead_letter_topic(topic);
                assert!(
                    principal.writes.contains(&parked.as_str()),
                    "{} reads {topic} but may not park on {parked}",
                    principal.user
                );
            }
            assert!(principal.writes.contains(&topics::PRESENCE));
        }
    }

    #[test]
    fn each_business_topic_has_exactly_one_publishing_service() {
        for topic in topics::ALL {
            let publishers: Vec<&str> = PRINCIPALS
                .iter()
                .filter(|p| p.group.is_some() && p.writes.contains(&topic))
                .map(|p| p.user)
                .collect();
            assert_eq!(publishers.len(), 1, "{topic} is written by {publishers:?}");
        }
    }

    #[test]
    fn the_dashboard_only_reads() {
        assert!(DASHBOARD.writes.is_empty());
        assert_eq!(DASHBOARD.group, None);
    }
}
