//! The one JSON envelope every event travels in.
//!
//! ```json
//! {"event_id": "…", "event_type": "order_placed", "event_version": 1,
//!  "occurred_at": "2026-11-22T10:00:00Z", "order_id": "…", "data": {…}}
//! ```
//! Decoding happens in two steps so that each failure names its cause: first the envelope,
//! then, once its type and version are known to be supported, the typed `data`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::events::*;

/// Kafka header names carried by every event, so tools can route without parsing the body.
pub mod headers {
    pub const EVENT_TYPE: &str = "event_type";
    pub const EVENT_VERSION: &str = "event_version";
    pub const EVENT_ID: &str = "event_id";
    /// The W3C trace context of what caused the event (`shop_runtime::trace`).
    pub const TRACEPARENT: &str = "traceparent";
}

/// Everything about an event except its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(flatten)]
    pub meta: EventMeta,
    pub data: T,
}

/// Every event type the system knows, as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    OrderPlaced(OrderPlaced),
    StockReserved(StockReserved),
    StockRejected(StockRejected),
    StockReleased(StockReleased),
    PaymentAuthorized(PaymentAuthorized),
    PaymentDeclined(PaymentDeclined),
    PaymentCaptured(PaymentCaptured),
    PaymentVoided(PaymentVoided),
    OrderConfirmed(OrderConfirmed),
    OrderCancelled(OrderCancelled),
}

impl Event {
    /// When the order this event ends was placed, for the events that end an order's flow
    /// (`order_confirmed`, `order_cancelled`); `None` for the steps along the way.
    pub fn ends_order_placed_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Event::OrderConfirmed(order) => Some(order.placed_at),
            Event::OrderCancelled(order) => Some(order.placed_at),
            _ => None,
        }
    }
}

/// Why a message is not an event this code can act on. None of these pass on a retry, so
/// a message that fails to decode goes straight to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message has no payload")]
    Empty,
    #[error("payload is not a valid event envelope: {0}")]
    MalformedEnvelope(#[source] serde_json::Error),
    #[error("unknown event type `{0}`")]
    UnknownEventType(String),
    #[error("unsupported version {version} of event type `{event_type}`")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("`{event_type}` data does not match its schema: {source}")]
    MalformedData {
        event_type: String,
        source: serde_json::Error,
    },
    #[error("`{event_type}` data is invalid: {reason}")]
    InvalidData { event_type: String, reason: String },
}

impl DecodeError {
    /// A short, stable name for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::MalformedEnvelope(_) => "malformed_envelope",
            DecodeError::UnknownEventType(_) => "unknown_event_type",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::MalformedData { .. } => "malformed_data",
            DecodeError::InvalidData { .. } => "invalid_data",
        }
    }
}

impl<T: EventData> Envelope<T> {
    /// A fresh event with a new event id.
    pub fn new(data: T, occurred_at: DateTime<Utc>) -> Self {
        Envelope {
            meta: EventMeta {
                event_id: Uuid::new_v4(),
                event_type: T::EVENT_TYPE.to_owned(),
                event_version: T::VERSION,
                occurred_at,
                order_id: data.order_id(),
            },
            data,
        }
    }
}

impl Envelope<OrderPlaced> {
    /// A fresh `order_placed` event with a new event id.
    pub fn order_placed(data: OrderPlaced, occurred_at: DateTime<Utc>) -> Self {
        Envelope::new(data, occurred_at)
    }
}

impl<T: Serialize> Envelope<T> {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope of plain data always serialises")
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    event_id: Uuid,
    event_type: String,
    event_version: u32,
    occurred_at: DateTime<Utc>,
    order_id: Uuid,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl Envelope<Event> {
    /// Decodes a message payload into a typed, validated event.
    pub fn decode(payload: Option<&[u8]>) -> Result<Self, DecodeError> {
        let payload = payload
            .filter(|p| !p.is_empty())
            .ok_or(DecodeError::Empty)?;
        let raw: RawEnvelope<'_> =
            serde_json::from_slice(payload).map_err(DecodeError::MalformedEnvelope)?;
        let meta = EventMeta {
            event_id: raw.event_id,
            event_type: raw.event_type,
            event_version: raw.event_version,
            occurred_at: raw.occurred_at,
            order_id: raw.order_id,
        };
        let data = match meta.event_type.as_str() {
            OrderPlaced::EVENT_TYPE => {
                let order: OrderPlaced = decode_data(&meta, raw.data)?;
                order.validate().map_err(|reason| invalid(&meta, reason))?;
                Event::OrderPlaced(order)
            }
            <StockReserved as EventData>::EVENT_TYPE => {
                Event::StockReserved(decode_data(&meta, raw.data)?)
            }
            <StockRejected as EventData>::EVENT_TYPE => {
                Event::StockRejected(decode_data(&meta, raw.data)?)
            }
            <StockReleased as EventData>::EVENT_TYPE => {
                Event::StockReleased(decode_data(&meta, raw.data)?)
            }
            <PaymentAuthorized as EventData>::EVENT_TYPE => {
                Event::PaymentAuthorized(decode_data(&meta, raw.data)?)
            }
            <PaymentDeclined as EventData>::EVENT_TYPE => {
                Event::PaymentDeclined(decode_data(&meta, raw.data)?)
            }
            <PaymentCaptured as EventData>::EVENT_TYPE => {
                Event::PaymentCaptured(decode_data(&meta, raw.data)?)
            }
            <PaymentVoided as EventData>::EVENT_TYPE => {
                Event::PaymentVoided(decode_data(&meta, raw.data)?)
            }
            <OrderConfirmed as EventData>::EVENT_TYPE => {
                let order: OrderConfirmed = decode_data(&meta, raw.data)?;
                order.validate().map_err(|reason| invalid(&meta, reason))?;
                Event::OrderConfirmed(order)
            }
            <OrderCancelled as EventData>::EVENT_TYPE => {
                // Version 1 is upcast: the same cancellation, its cause unknown.
                let order: OrderCancelled = match meta.event_version {
                    1 => decode_data::<v1::OrderCancelled>(&meta, raw.data)?.into(),
                    _ => decode_data(&meta, raw.data)?,
                };
                order
                    .validate(meta.event_version)
                    .map_err(|reason| invalid(&meta, reason))?;
                Event::OrderCancelled(order)
            }
            other => return Err(DecodeError::UnknownEventType(other.to_owned())),
        };
        Ok(Envelope { meta, data })
    }
}

/// The typed `data` of a supported version, about the envelope's own order.
fn decode_data<T: EventData + serde::de::DeserializeOwned>(
    meta: &EventMeta,
    data: &RawValue,
) -> Result<T, DecodeError> {
    if meta.event_version != T::VERSION {
        return Err(DecodeError::UnsupportedVersion {
            event_type: meta.event_type.clone(),
            version: meta.event_version,
        });
    }
    let data: T =
        serde_json::from_str(data.get()).map_err(|source| DecodeError::MalformedData {
            event_type: meta.event_type.clone(),
            source,
        })?;
    if data.order_id() != meta.order_id {
        return Err(invalid(
            meta,
            "data.order_id differs from the envelope's order_id",
        ));
    }
    Ok(data)
}

fn invalid(meta: &EventMeta, reason: impl Into<String>) -> DecodeError {
    DecodeError::InvalidData {
        event_type: meta.event_type.clone(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OrderLine;

    const GOLDEN_ORDER_PLACED: &str = include_str!("../tests/golden/order_placed.v1.json");

    fn golden_event() -> Envelope<OrderPlaced> {
        let order_id: Uuid = "0b8f5c1e-7d2a-4c1e-9a53-2f0c6f1d9e01".parse().unwrap();
        Envelope {
            meta: EventMeta {
                event_id: "5d0c2a7e-1b3f-4e8a-9c6d-7a2b1e0f3c44".parse().unwrap(),
                event_type: "order_placed".into(),
                event_version: 1,
                occurred_at: "2026-11-22T10:15:30.123Z".parse().unwrap(),
                order_id,
            },
            data: OrderPlaced {
                order_id,
                customer_id: "cust-42".into(),
                customer_email: "ada@example.com".into(),
                items: vec![
                    OrderLine {
                        sku: "KB-001".into(),
                        quantity: 1,
                        unit_price_cents: 8_999,
                    },
                    OrderLine {
                        sku: "CB-005".into(),
                        quantity: 3,
                        unit_price_cents: 1_299,
                    },
                ],
                total_cents: 12_896,
                currency: "EUR".into(),
            },
        }
    }

    fn as_value(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn order_placed_serialises_exactly_as_the_golden_file() {
        let produced = as_value(&golden_event().to_json());
        assert_eq!(produced, as_value(GOLDEN_ORDER_PLACED.as_bytes()));
    }

    #[test]
    fn the_golden_order_placed_decodes_to_the_same_event() {
        let decoded = Envelope::decode(Some(GOLDEN_ORDER_PLACED.as_bytes())).unwrap();
        let expected = golden_event();
        assert_eq!(decoded.meta, expected.meta);
        assert_eq!(decoded.data, Event::OrderPlaced(expected.data));
    }

    /// Every saga event as its golden file spells it: (file, the event it must decode to).
    fn saga_goldens() -> Vec<(&'static str, Event)> {
        let order_id: Uuid = "0b8f5c1e-7d2a-4c1e-9a53-2f0c6f1d9e01".parse().unwrap();
        let placed = golden_event().data;
        let placed_at = "2026-11-22T10:15:30.123Z".parse().unwrap();
        let short = "insufficient stock: KB-001: 1 wanted, 0 available".to_owned();
        vec![
            (
                include_str!("../tests/golden/stock_reserved.v1.json"),
                Event::StockReserved(StockReserved { order_id }),
            ),
            (
                include_str!("../tests/golden/stock_rejected.v1.json"),
                Event::StockRejected(StockRejected {
                    order_id,
                    reason: short.clone(),
                }),
            ),
            (
                include_str!("../tests/golden/stock_released.v1.json"),
                Event::StockReleased(StockReleased { order_id }),
            ),
            (
                include_str!("../tests/golden/payment_authorized.v1.json"),
                Event::PaymentAuthorized(PaymentAuthorized {
                    order_id,
                    amount_cents: 12_896,
                    currency: "EUR".into(),
                }),
            ),
            (
                include_str!("../tests/golden/payment_declined.v1.json"),
                Event::PaymentDeclined(PaymentDeclined {
                    order_id,
                    reason: "card limit exceeded: 128.96 EUR is over the limit of 100.00 EUR"
                        .into(),
                }),
            ),
            (
                include_str!("../tests/golden/payment_captured.v1.json"),
                Event::PaymentCaptured(PaymentCaptured {
                    order_id,
                    amount_cents: 12_896,
                    currency: "EUR".into(),
                }),
            ),
            (
                include_str!("../tests/golden/payment_voided.v1.json"),
                Event::PaymentVoided(PaymentVoided {
                    order_id,
                    amount_cents: 12_896,
                    currency: "EUR".into(),
                }),
            ),
            (
                include_str!("../tests/golden/order_confirmed.v1.json"),
                Event::OrderConfirmed(OrderConfirmed {
                    order_id,
                    customer_id: placed.customer_id.clone(),
                    customer_email: placed.customer_email.clone(),
                    items: placed.items.clone(),
                    total_cents: placed.total_cents,
                    currency: placed.currency.clone(),
                    placed_at,
                }),
            ),
            (
                include_str!("../tests/golden/order_cancelled.v2.json"),
                Event::OrderCancelled(OrderCancelled {
                    order_id,
                    customer_id: placed.customer_id.clone(),
                    customer_email: placed.customer_email.clone(),
                    items: placed.items.clone(),
                    total_cents: placed.total_cents,
                    currency: placed.currency.clone(),
                    placed_at,
                    reason: short,
                    cause: Some(CancelCause::StockRejected),
                }),
            ),
        ]
    }

    /// The envelope of `data` as its golden file has it.
    fn encode_like(golden: &serde_json::Value, event: &Event) -> serde_json::Value {
        fn wrap<T: EventData + Clone>(golden: &serde_json::Value, data: &T) -> serde_json::Value {
            let mut envelope = Envelope::new(
                data.clone(),
                golden["occurred_at"].as_str().unwrap().parse().unwrap(),
            );
            envelope.meta.event_id = golden["event_id"].as_str().unwrap().parse().unwrap();
            as_value(&envelope.to_json())
        }
        match event {
            Event::OrderPlaced(data) => wrap(golden, data),
            Event::StockReserved(data) => wrap(golden, data),
            Event::StockRejected(data) => wrap(golden, data),
            Event::StockReleased(data) => wrap(golden, data),
            Event::PaymentAuthorized(data) => wrap(golden, data),
            Event::PaymentDeclined(data) => wrap(golden, data),
            Event::PaymentCaptured(data) => wrap(golden, data),
            Event::PaymentVoided(data) => wrap(golden, data),
            Event::OrderConfirmed(data) => wrap(golden, data),
            Event::OrderCancelled(data) => wrap(golden, data),
        }
    }

    #[test]
    fn every_saga_event_serialises_exactly_as_its_golden_file_and_decodes_back() {
        for (golden, event) in saga_goldens() {
            let value = as_value(golden.as_bytes());
            assert_eq!(
                encode_like(&value, &event),
                value,
                "{}",
                value["event_type"]
            );
            let decoded = Envelope::decode(Some(golden.as_bytes()))
                .unwrap_or_else(|err| panic!("{}: {err}", value["event_type"]));
            assert_eq!(decoded.data, event);
            assert_eq!(decoded.meta.order_id, event_order_id(&event));
        }
    }

    fn event_order_id(event: &Event) -> Uuid {
        match event {
            Event::OrderPlaced(e) => e.order_id,
            Event::StockReserved(e) => e.order_id,
            Event::StockRejected(e) => e.order_id,
            Event::StockReleased(e) => e.order_id,
            Event::PaymentAuthorized(e) => e.order_id,
            Event::PaymentDeclined(e) => e.order_id,
            Event::PaymentCaptured(e) => e.order_id,
            Event::PaymentVoided(e) => e.order_id,
            Event::OrderConfirmed(e) => e.order_id,
            Event::OrderCancelled(e) => e.order_id,
        }
    }

    #[test]
    fn a_reply_about_another_order_than_its_envelope_is_invalid() {
        let golden = include_str!("../tests/golden/stock_reserved.v1.json");
        let mut value = as_value(golden.as_bytes());
        value["data"]["order_id"] = Uuid::new_v4().to_string().into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert_eq!(err.kind(), "invalid_data", "{err}");
    }

    const GOLDEN_CANCELLED_V1: &str = include_str!("../tests/golden/order_cancelled.v1.json");
    const GOLDEN_CANCELLED_V2: &str = include_str!("../tests/golden/order_cancelled.v2.json");

    fn cancelled(golden: &str) -> OrderCancelled {
        match Envelope::decode(Some(golden.as_bytes())).unwrap().data {
            Event::OrderCancelled(order) => order,
            other => panic!("not a cancellation: {other:?}"),
        }
    }

    #[test]
    fn a_version_1_cancellation_is_read_as_the_same_cancellation_with_its_cause_unknown() {
        let v1 = cancelled(GOLDEN_CANCELLED_V1);
        let v2 = cancelled(GOLDEN_CANCELLED_V2);
        assert_eq!(v1.cause, None);
        assert_eq!(v2.cause, Some(CancelCause::StockRejected));
        assert_eq!(OrderCancelled { cause: None, ..v2 }, v1);
    }

    #[test]
    fn a_producer_that_still_writes_version_1_writes_exactly_what_version_1_wrote() {
        let golden = as_value(GOLDEN_CANCELLED_V1.as_bytes());
        let mut envelope = Envelope::new(
            v1::OrderCancelled::from(cancelled(GOLDEN_CANCELLED_V2)),
            golden["occurred_at"].as_str().unwrap().parse().unwrap(),
        );
        envelope.meta.event_id = golden["event_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(as_value(&envelope.to_json()), golden);
    }

    #[test]
    fn a_version_2_cancellation_must_name_its_cause_and_a_version_1_must_not() {
        let mut value = as_value(GOLDEN_CANCELLED_V2.as_bytes());
        value["data"].as_object_mut().unwrap().remove("cause");
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert_eq!(err.kind(), "invalid_data", "{err}");

        let mut value = as_value(GOLDEN_CANCELLED_V1.as_bytes());
        value["data"]["cause"] = "timed_out".into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert_eq!(err.kind(), "malformed_data", "{err}");

        let mut value = as_value(GOLDEN_CANCELLED_V2.as_bytes());
        value["data"]["cause"] = "bored".into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert_eq!(err.kind(), "malformed_data", "{err}");
    }

    #[test]
    fn a_version_3_cancellation_is_unsupported_until_a_consumer_learns_it() {
        let mut value = as_value(GOLDEN_CANCELLED_V2.as_bytes());
        value["event_version"] = 3.into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnsupportedVersion { version: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_cancellation_without_a_reason_is_invalid() {
        let golden = GOLDEN_CANCELLED_V2;
        let mut value = as_value(golden.as_bytes());
        value["data"]["reason"] = " ".into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert_eq!(err.kind(), "invalid_data", "{err}");
    }

    #[test]
    fn an_unknown_version_is_reported_as_unsupported_not_malformed() {
        let mut value = as_value(GOLDEN_ORDER_PLACED.as_bytes());
        value["event_version"] = 2.into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnsupportedVersion { version: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_a_malformed_envelope() {
        let err = Envelope::decode(Some(b"\x00\xffnot json")).unwrap_err();
        assert_eq!(err.kind(), "malformed_envelope");
        assert_eq!(Envelope::decode(None).unwrap_err().kind(), "empty");
    }

    #[test]
    fn an_order_whose_total_does_not_add_up_is_invalid() {
        let mut value = as_value(GOLDEN_ORDER_PLACED.as_bytes());
        value["data"]["total_cents"] = 1.into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert_eq!(err.kind(), "invalid_data", "{err}");
    }

    #[test]
    fn an_order_with_a_negative_quantity_is_invalid() {
        let mut value = as_value(GOLDEN_ORDER_PLACED.as_bytes());
        value["data"]["items"][0]["quantity"] = (-1).into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert_eq!(err.kind(), "invalid_data", "{err}");
    }

    #[test]
    fn an_unknown_event_type_is_named_in_the_error() {
        let mut value = as_value(GOLDEN_ORDER_PLACED.as_bytes());
        value["event_type"] = "order_teleported".into();
        let err = Envelope::decode(Some(&serde_json::to_vec(&value).unwrap())).unwrap_err();
        assert_eq!(err.to_string(), "unknown event type `order_teleported`");
    }
}
