use shop_runtime::config::ServiceIdentity;

/// Everything else comes from the common settings (`analytics-service --help`).
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "analytics-service",
    database: "analytics",
    http_port: 8084,
};
