//! The AsyncAPI document describes what the code sends: it is committed as
//! `contract/asyncapi.json` (a change to an event type shows as a diff of it, and fails here
//! until the file is regenerated), every event type has a message in it, and every golden
//! file validates against its message's payload schema.

use serde_json::{Value, json};
use shop_contract::asyncapi;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/asyncapi.json");

fn pretty(document: &Value) -> String {
    serde_json::to_string_pretty(document).unwrap() + "\n"
}

#[test]
fn the_committed_document_is_the_one_the_types_make() {
    let generated = pretty(&asyncapi::document());
    if std::env::var_os("SHOP_UPDATE_ASYNCAPI").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "contract/asyncapi.json is not what the event types make: an event changed without \
         its document. Regenerate it with `SHOP_UPDATE_ASYNCAPI=1 cargo test -p shop-contract \
         --test asyncapi`, review the diff against docs/events.md's compatibility rules, and \
         commit it."
    );
}

#[test]
fn every_golden_file_validates_against_its_message_and_every_topic_is_a_channel() {
    let document = asyncapi::document();
    let messages = document["components"]["messages"].as_object().unwrap();
    let mut golden: Vec<_> = std::fs::read_dir(shop_contract::GOLDEN_DIR)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    golden.sort();
    assert_eq!(
        golden.len(),
        messages.len(),
        "a golden file per event type and version"
    );
    for path in golden {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let event_type = event["event_type"].as_str().unwrap();
        let version = &event["event_version"];
        let message = messages
            .values()
            .find(|m| {
                m["payload"]["properties"]["event_type"]["const"] == event_type
                    && &m["payload"]["properties"]["event_version"]["const"] == version
            })
            .unwrap_or_else(|| panic!("no message for {event_type} version {version}"));
        // The payload schema with the document's components beside it, so its `$ref`s resolve.
        let mut schema = message["payload"].clone();
        schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
        schema["components"] = document["components"].clone();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());

        // And a payload that breaks the contract does not validate.
        let mut broken = event.clone();
        broken["data"]["order_id"] = json!("not-a-uuid");
        broken["data"]["unexpected"] = json!(1);
        assert!(
            !validator.is_valid(&broken),
            "{event_type}: a broken payload validated"
        );
    }
    for topic in shop_contract::topics::ALL {
        assert!(
            document["channels"][topic].is_object(),
            "no channel {topic}"
        );
    }
}

#[test]
fn every_topic_has_its_publisher_and_its_consumer_groups() {
    let document = asyncapi::document();
    let operations = document["operations"].as_object().unwrap();
    assert_eq!(operations["order-service.send.orders"]["action"], "send");
    let inventory = &operations["inventory-service.receive.orders"];
    assert_eq!(inventory["action"], "receive");
    assert_eq!(
        inventory["bindings"]["kafka"]["groupId"]["enum"][0],
        "inventory-service"
    );
    assert_eq!(
        operations["order-service.receive.payments"]["channel"]["$ref"],
        "#/channels/payments"
    );
}
