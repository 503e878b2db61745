//! The Order Service: takes orders over HTTP, stores them with an outbox row in one
//! transaction, and relays the outbox to Kafka.

pub mod config;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod outbox;
pub mod routes;
pub mod startup;

pub use config::{Config, IDENTITY, Settings};
pub use startup::Application;
