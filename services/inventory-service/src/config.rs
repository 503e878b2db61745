use shared_events::config::ServiceIdentity;

/// Everything else comes from the common settings (`inventory-service --help`).
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "inventory-service",
    database: "inventory",
    http_port: 8081,
};
