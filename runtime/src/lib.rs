//! What every shop service runs, written once: Kafka producers and consumers, the dead-letter
//! path, the outbox and its relay, database bootstrapping with the tables this crate writes to
//! (`outbox`, `processed_events`) and their migrations, the HTTP server with the operational
//! endpoints (`/healthz`, `/readyz`, `/metrics`, `/assignment`) and OpenAPI, telemetry, the
//! one retry policy every loop that waits uses, and the app that starts and stops them
//! together.
//!
//! The events themselves (envelope, payloads, topics, principals) are the contract, in
//! `shop-contract`; they are re-exported here under the same paths, so a service needs this
//! one dependency.

pub use shop_contract::{access, catalog, envelope, events, topics};

pub mod app;
pub mod config;
pub mod db;
pub mod email;
pub mod health;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod migrations;
pub mod openapi;
pub mod outbox;
pub mod presence;
pub mod retry;
pub mod secret;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;

pub use shop_contract::events::*;
pub use shop_contract::{DecodeError, Envelope, Event, EventMeta};
