//! The Order Service: takes orders over HTTP, stores each with its `order_placed` event in
//! one transaction (the outbox), and coordinates the order's saga: it consumes Inventory's and
//! Payment's answers and decides every order `confirmed` or `cancelled`.

pub mod config;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod routes;
pub mod saga;
pub mod startup;

pub use config::{Config, IDENTITY, Settings};
pub use startup::{Application, build};
