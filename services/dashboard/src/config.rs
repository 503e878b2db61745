use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use shop_runtime::config::KafkaSettings;
use shop_runtime::http::{ServerLimits, ServerLimitsArgs};
use shop_runtime::kafka::security::{KafkaSecurity, KafkaSecurityArgs};
use shop_runtime::telemetry::LogFormat;

/// The dashboard's environment. It has no database: everything it shows comes from Kafka,
/// and the orders it places go through the Order Service's API like anyone else's.
#[derive(Debug, clap::Parser)]
#[command(
    name = "dashboard",
    about = "A live view of shop's consumer groups, partitions, lag and orders"
)]
pub struct Config {
    /// Kafka brokers to bootstrap from, comma-separated.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_bootstrap_servers: String,
    #[command(flatten)]
    pub kafka_security: KafkaSecurityArgs,
    /// Create the shop's topics if they are missing (a laptop's broker); `false` where an
    /// admin creates them, and the dashboard, which only reads, may not.
    #[arg(long, env = "KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_create_topics: bool,
    #[command(flatten)]
    pub http_limits: ServerLimitsArgs,
    /// Address the HTTP server binds.
    #[arg(long, env = "HTTP_ADDR", default_value_t = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8088)))]
    pub http_addr: SocketAddr,
    /// Where the page's "place an order" and load bursts send their orders.
    #[arg(
        long,
        env = "ORDER_SERVICE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub order_service_url: String,
    /// Names this instance in logs and Kafka client ids [default: dashboard-$HOSTNAME, else dashboard-pid].
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// How long to wait for Kafka at start-up before giving up.
    #[arg(long, env = "STARTUP_TIMEOUT_SECS", default_value = "30", value_parser = shop_runtime::config::secs)]
    pub startup_timeout_secs: Duration,
    /// `text` for a terminal, `json` for containers.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub http_limits: ServerLimits,
    pub order_service_url: String,
    pub kafka: KafkaSettings,
    pub log_format: LogFormat,
}

impl Config {
    /// Reads the files the settings name and checks them together, naming the variable at
    /// fault.
    pub fn resolve(self) -> Result<Settings, String> {
        let security = KafkaSecurity::from_args(&self.kafka_security)?;
        let instance_id = self
            .instance_id
            .unwrap_or_else(|| match std::env::var("HOSTNAME") {
                Ok(host) if !host.is_empty() => format!("dashboard-{host}"),
                _ => format!("dashboard-{}", std::process::id()),
            });
        Ok(Settings {
            http_addr: self.http_addr,
            http_limits: self.http_limits.resolve(),
            order_service_url: self.order_service_url.trim_end_matches('/').to_owned(),
            kafka: KafkaSettings {
                bootstrap_servers: self.kafka_bootstrap_servers,
                security,
                create_topics: self.kafka_create_topics,
                group_id: instance_id.clone(),
                client_id: instance_id,
                topic_replication_factor: 1,
                topic_min_insync_replicas: None,
                session_timeout: Duration::from_secs(6),
                startup_timeout: self.startup_timeout_secs,
            },
            log_format: self.log_format,
        })
    }
}

impl Settings {
    /// Settings for a test: port 0 on localhost.
    pub fn for_test(bootstrap_servers: &str, order_service_url: &str, instance_id: &str) -> Self {
        Config {
            kafka_bootstrap_servers: bootstrap_servers.to_owned(),
            kafka_security: KafkaSecurityArgs::default(),
            kafka_create_topics: true,
            http_limits: ServerLimitsArgs::default(),
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            order_service_url: order_service_url.to_owned(),
            instance_id: Some(instance_id.to_owned()),
            startup_timeout_secs: Duration::from_secs(30),
            log_format: LogFormat::Text,
        }
        .resolve()
        .expect("test settings are valid")
    }
}
