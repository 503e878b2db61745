use shared_events::config::ServiceIdentity;

/// Everything else comes from the common settings (`payment-service --help`).
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "payment-service",
    database: "payments",
    http_port: 8082,
};
