use shop_runtime::config::{CommonArgs, ServiceIdentity, ServiceSettings};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "inventory-service",
    database: "inventory",
    http_port: 8081,
};

#[derive(Debug, clap::Parser)]
#[command(
    name = "inventory-service",
    about = "Reserves the stock of every placed order, or rejects it, and releases it when the order is cancelled"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Units of every product a new database starts with, instead of the catalog's (1,000
    /// keyboards, 3 lamps…). For benchmarks, so that a long run measures orders that go
    /// through rather than ones the stock cannot cover. A stocked database is left as it is.
    #[arg(long, env = "INVENTORY_INITIAL_STOCK", value_parser = clap::value_parser!(i32).range(0..))]
    pub initial_stock: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceSettings,
    /// `None`: the catalog's initial stock.
    pub initial_stock: Option<i32>,
}

impl Config {
    /// Reads the files the settings name and checks them, naming the variable at fault.
    pub fn into_settings(self) -> Result<Settings, String> {
        Ok(Settings {
            service: ServiceSettings::from_args(IDENTITY, self.common)?,
            initial_stock: self.initial_stock,
        })
    }
}

impl Settings {
    /// `service` with the catalog's stock.
    pub fn for_test(service: ServiceSettings) -> Self {
        Settings {
            service,
            initial_stock: None,
        }
    }
}
