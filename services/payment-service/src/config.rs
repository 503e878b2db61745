use shop_runtime::config::{CommonArgs, ServiceIdentity, ServiceSettings};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "payment-service",
    database: "payments",
    http_port: 8082,
};

/// The sandbox card's limit unless configured: 1,000.00 EUR.
pub const DEFAULT_CARD_LIMIT_CENTS: i64 = 100_000;

#[derive(Debug, clap::Parser)]
#[command(
    name = "payment-service",
    about = "Authorizes every placed order's total, then captures or voids it as the order is confirmed or cancelled"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The simulated card's limit, in cents: an order whose total is above it is declined.
    #[arg(
        long,
        env = "PAYMENT_CARD_LIMIT_CENTS",
        default_value_t = DEFAULT_CARD_LIMIT_CENTS,
        value_parser = clap::value_parser!(i64).range(0..)
    )]
    pub card_limit_cents: i64,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceSettings,
    pub card_limit_cents: i64,
}

impl Config {
    /// Reads the files the settings name and checks them, naming the variable at fault.
    pub fn into_settings(self) -> Result<Settings, String> {
        Ok(Settings {
            service: ServiceSettings::from_args(IDENTITY, self.common)?,
            card_limit_cents: self.card_limit_cents,
        })
    }
}

impl Settings {
    /// `service` with the default card limit.
    pub fn for_test(service: ServiceSettings) -> Self {
        Settings {
            service,
            card_limit_cents: DEFAULT_CARD_LIMIT_CENTS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_card_limit_is_configurable_and_never_negative() {
        let config = Config::try_parse_from(["payment-service", "--card-limit-cents", "5000"]);
        assert_eq!(
            config.unwrap().into_settings().unwrap().card_limit_cents,
            5_000
        );
        let negative = Config::try_parse_from(["payment-service", "--card-limit-cents", "-1"]);
        assert!(negative.is_err());
    }
}
