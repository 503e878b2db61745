//! The events described for any language: an AsyncAPI 3 document of every topic, every event
//! (its payload as JSON Schema generated from the Rust types, its key and headers), which
//! principal publishes to each topic and which consumer groups read it.
//!
//! Every service serves it at `/asyncapi.json`; `contract/asyncapi.json` is the same document
//! committed, so a reviewer sees a change to the contract as a diff, and a test fails when a
//! type changes without it (`SHOP_UPDATE_ASYNCAPI=1 cargo test -p shop-contract` rewrites it).
//! The golden files are validated against it.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::access::{PRINCIPALS, Principal};
use crate::envelope::headers;
use crate::events::*;
use crate::topics;

/// One event type as the document lists it.
struct Message {
    /// The key in `components.messages`: the event type for its current version, with
    /// `.v<N>` appended for an older version still read (`order_cancelled.v1`).
    name: String,
    event_type: &'static str,
    version: u32,
    topic: &'static str,
    /// `$ref` to the payload's schema in `components.schemas`.
    data: Value,
}

/// The AsyncAPI 3.0 document of the shop's events.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft07()
        .with(|settings| settings.definitions_path = "#/components/schemas/".into())
        .into_generator();
    let mut messages = Vec::new();
    macro_rules! message {
        ($($type:ty),* $(,)?) => {$(
            message!(@one $type, <$type as EventData>::EVENT_TYPE.to_owned());
        )*};
        (older: $($type:ty),* $(,)?) => {$(
            message!(@one $type, format!(
                "{}.v{}",
                <$type as EventData>::EVENT_TYPE,
                <$type as EventData>::VERSION
            ));
        )*};
        (@one $type:ty, $name:expr) => {
            let data = generator.subschema_for::<$type>().to_value();
            messages.push(Message {
                name: $name,
                event_type: <$type as EventData>::EVENT_TYPE,
                version: <$type as EventData>::VERSION,
                topic: <$type as EventData>::TOPIC,
                data,
            });
        };
    }
    message!(
        OrderPlaced,
        StockReserved,
        StockRejected,
        StockReleased,
        PaymentAuthorized,
        PaymentDeclined,
        PaymentCaptured,
        PaymentVoided,
        OrderConfirmed,
        OrderCancelled,
    );
    // Older versions consumers still read (docs/events.md, rule 3).
    message!(older: v1::OrderCancelled);
    let schemas: Map<String, Value> = generator.take_definitions(true);
    let mut channels = Map::new();
    for topic in topics::ALL {
        let on_topic: Map<String, Value> = messages
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| {
                let reference = format!("#/components/messages/{}", m.name);
                (m.name.clone(), json!({ "$ref": reference }))
            })
            .collect();
        channels.insert(
            topic.to_owned(),
            json!({
                "address": topic,
                "description": format!(
                    "Events about orders, keyed by order id so that every event of one order \
                     stays in one partition, in order; {} partitions.",
                    topics::PARTITIONS
                ),
                "messages": on_topic,
            }),
        );
        let parked = topics::dead_letter_topic(topic);
        channels.insert(
            parked.clone(),
            json!({
                "address": parked,
                "description": format!(
                    "Messages from `{topic}` a consumer could not process, parked unchanged \
                     (key, payload, headers) with the reason in `dlt.*` headers; `shop-dlt` \
                     lists and replays them, and records each replay here as a message \
                     without payload."
                ),
                "messages": {},
            }),
        );
    }

    let mut operations = Map::new();
    for principal in PRINCIPALS {
        operations.extend(operations_of(&principal, &channels));
    }

    let mut components_messages = Map::new();
    for message in &messages {
        components_messages.insert(message.name.clone(), message_object(message, &schemas));
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "shop events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The events shop's services exchange over Kafka. Every event is \
                one JSON envelope (`event_id`, `event_type`, `event_version`, `occurred_at`, \
                `order_id`, `data`); a consumer reads the envelope first and then the `data` \
                of the types and versions it knows. Compatibility rules: docs/events.md.",
            "license": { "name": "Apache-2.0" },
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": components_messages,
            "schemas": schemas,
        },
    })
}

/// The message object of one event type: the envelope around its payload, its key, headers;
/// its summary is what the payload type's documentation says it means.
fn message_object(message: &Message, schemas: &Map<String, Value>) -> Value {
    let uuid = json!({ "type": "string", "format": "uuid" });
    let summary = message.data["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .and_then(|name| schemas.get(name)?["description"].as_str())
        .unwrap_or(message.event_type);
    json!({
        "name": message.name,
        "title": format!("{} (version {})", message.event_type, message.version),
        "summary": summary,
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "required": [headers::EVENT_TYPE, headers::EVENT_VERSION, headers::EVENT_ID],
            "properties": {
                headers::EVENT_TYPE: { "const": message.event_type },
                headers::EVENT_VERSION: { "const": message.version.to_string() },
                headers::EVENT_ID: uuid,
                headers::TRACEPARENT: {
                    "type": "string",
                    "description": "W3C trace context of what caused the event",
                    "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                },
            },
        },
        "payload": {
            "type": "object",
            "required": ["event_id", "event_type", "event_version", "occurred_at", "order_id", "data"],
            "properties": {
                "event_id": uuid,
                "event_type": { "const": message.event_type },
                "event_version": { "const": message.version },
                "occurred_at": { "type": "string", "format": "date-time" },
                "order_id": uuid,
                "data": message.data,
            },
        },
        "bindings": {
            "kafka": {
                "key": { "type": "string", "format": "uuid", "description": "The order's id" },
                "bindingVersion": "0.5.0",
            },
        },
    })
}

/// What `principal` publishes (`send`) and reads (`receive`, in its consumer group) among the
/// documented channels.
fn operations_of(principal: &Principal, channels: &Map<String, Value>) -> Map<String, Value> {
    let mut operations = Map::new();
    let documented = |topic: &&&str| channels.contains_key(**topic);
    for topic in principal.writes.iter().filter(documented) {
        operations.insert(
            format!("{}.send.{topic}", principal.user),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{}", escape(topic)) },
                "summary": format!("{} publishes to {topic}", principal.user),
            }),
        );
    }
    for topic in principal.reads.iter().filter(documented) {
        let mut operation = json!({
            "action": "receive",
            "channel": { "$ref": format!("#/channels/{}", escape(topic)) },
            "summary": format!("{} reads {topic}", principal.user),
        });
        if let Some(group) = principal.group {
            operation["bindings"] = json!({
                "kafka": {
                    "groupId": { "type": "string", "enum": [group] },
                    "bindingVersion": "0.5.0",
                },
            });
        }
        operations.insert(format!("{}.receive.{topic}", principal.user), operation);
    }
    operations
}

/// A channel name as a JSON Pointer token (RFC 6901).
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}
