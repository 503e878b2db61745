use std::time::Duration;

use crate::saga::CancelledVersion;
use shop_runtime::config::{CommonArgs, ServiceIdentity, ServiceSettings};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "order-service",
    database: "orders",
    http_port: 8080,
};

/// The Order Service's environment.
#[derive(Debug, clap::Parser)]
#[command(
    name = "order-service",
    about = "Takes orders, publishes order_placed, and decides each order's saga: confirmed or cancelled"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How long an order may wait for Inventory's and Payment's answers before it is
    /// cancelled (and whatever was reserved or authorized for it is undone). Longer than a
    /// deploy or a short outage of a consumer, which orders should survive; a card
    /// authorization outlives it by days.
    #[arg(long, env = "SAGA_TIMEOUT_SECS", default_value = "900", value_parser = shop_runtime::config::secs)]
    pub saga_timeout_secs: Duration,
    /// The version of `order_cancelled` to write: 2 (with `cause`), or 1 while consumers that
    /// read only version 1 still run, during a rolling upgrade (docs/events.md).
    #[arg(long, env = "ORDER_CANCELLED_VERSION", value_enum, default_value = "2")]
    pub order_cancelled_version: CancelledVersion,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceSettings,
    pub saga_timeout: Duration,
    pub order_cancelled_version: CancelledVersion,
}

impl Config {
    /// Reads the files the settings name and checks them, naming the variable at fault.
    pub fn into_settings(self) -> Result<Settings, String> {
        Ok(Settings {
            service: ServiceSettings::from_args(IDENTITY, self.common)?,
            saga_timeout: self.saga_timeout_secs,
            order_cancelled_version: self.order_cancelled_version,
        })
    }
}

impl Settings {
    /// Settings for a test: the given service settings and the default saga time-out.
    pub fn for_test(service: ServiceSettings) -> Self {
        Settings {
            service,
            saga_timeout: Duration::from_secs(900),
            order_cancelled_version: CancelledVersion::default(),
        }
    }
}
