//! The contract between shop's services: what travels over Kafka, and who may send and read it.
//!
//! - [`envelope`]: the one JSON envelope every event travels in, and how it is decoded;
//! - [`events`]: every event's payload, and which topic and service each belongs to;
//! - [`topics`]: the topic names, their partitions and their dead-letter topics;
//! - [`access`]: every principal's topics and consumer group;
//! - [`catalog`]: the products every service knows;
//! - `asyncapi` (feature `asyncapi`): all of the above as an AsyncAPI 3 document, for
//!   consumers in any language.
//!
//! Every event type has a golden file in `tests/golden/` (one per version, e.g.
//! `order_placed.v1.json`): the bytes a producer writes, checked in both directions by the
//! tests. The crate is data and serde only; the Kafka plumbing, the outbox and the HTTP
//! server are in `shop-runtime`.

pub mod access;
#[cfg(feature = "asyncapi")]
pub mod asyncapi;
pub mod catalog;
pub mod envelope;
pub mod events;
pub mod topics;

pub use envelope::{DecodeError, Envelope, Event, EventMeta};
pub use events::*;

/// The folder of the golden files: one example of every event type, version by version.
pub const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
