//! The contract between shop's services and the Kafka plumbing they share.
//!
//! Everything a service needs to take part in the event flow lives here, written once:
//! the event envelope and its types, topic names, the product catalog every service seeds
//! from, producer and consumer creation, the dead-letter path, database bootstrapping and
//! the operational HTTP endpoints (`/healthz`, `/readyz`, `/metrics`, `/assignment`).

pub mod access;
pub mod app;
pub mod catalog;
pub mod config;
pub mod db;
pub mod email;
pub mod envelope;
pub mod events;
pub mod health;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod presence;
pub mod secret;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;
pub mod trace;

pub use envelope::{DecodeError, Envelope, Event, EventMeta};
pub use events::*;
