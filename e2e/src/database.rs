//! PostgreSQL for the tests: the local server, or a container when the backend is Docker.

use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ImageExt};
use testcontainers_modules::postgres::Postgres;

use crate::Backend;
use crate::images::Image;

pub struct Database {
    /// `postgres://user@host:port`, without a database name.
    pub server_url: String,
    _container: Option<ContainerAsync<Postgres>>,
}

impl Database {
    pub async fn start(backend: Backend) -> Database {
        match backend {
            Backend::Tansu => Database {
                server_url: std::env::var("SHOP_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned()),
                _container: None,
            },
            Backend::Docker => {
                let image = Image::postgres();
                let container = Postgres::default()
                    .with_name(image.name)
                    .with_tag(image.tag)
                    .start()
                    .await
                    .expect("cannot start the PostgreSQL container");
                let port = container
                    .get_host_port_ipv4(5432)
                    .await
                    .expect("PostgreSQL port is mapped");
                Database {
                    server_url: format!("postgres://postgres:postgres@127.0.0.1:{port}"),
                    _container: Some(container),
                }
            }
        }
    }

    /// The URL of a database of this test's own; the service creates it on start-up.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.server_url)
    }

    /// Drops this test's databases. Left-overs of crashed runs are dropped by `scripts/test.sh`.
    pub async fn drop_databases(&self, prefix: &str) {
        let Ok(pool) = sqlx::PgPool::connect(&self.url("postgres")).await else {
            return;
        };
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                .bind(format!("{prefix}%"))
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        for name in names {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&pool)
            .await;
        }
    }
}
