//! The Email Service: tells every customer how their order ended, once the saga decided it.
//! On `order_confirmed` it sends a confirmation with the items and the total; on
//! `order_cancelled` a cancellation notice with the reason, saying no money was taken; on
//! `order_placed` nothing. One mail per order, ever, through SMTP or, with no SMTP server
//! configured, as `<order id>.eml` files in a mail directory.
//!
//! `GET /emails` and `GET /emails/{order_id}` show what was sent, with its `kind`
//! (`confirmation` or `cancellation`).

pub mod config;
pub mod db;
pub mod handler;
pub mod mailer;
pub mod routes;

pub use config::{Config, IDENTITY, Settings};
pub use handler::NotifyCustomer;

use anyhow::Context;
use shop_runtime::app::ConsumerApp;
use shop_runtime::retry;

pub type Application = ConsumerApp<NotifyCustomer>;

pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let service = &settings.service;
    let mailer = mailer::Mailer::new(settings.smtp.as_ref(), &settings.mail_dir)?;
    mailer.check(std::time::Duration::from_secs(10)).await?;
    let from = settings
        .mail_from
        .parse()
        .with_context(|| format!("MAIL_FROM={} is not a mailbox", settings.mail_from))?;
    let pool = shop_runtime::db::connect(service, &db::MIGRATOR).await?;
    let routes = routes::router(pool.clone());
    let handler = NotifyCustomer { mailer, from };
    ConsumerApp::build(service, pool, handler, routes, retry::transient()).await
}
