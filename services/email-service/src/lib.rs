//! The Email Service: sends a confirmation for every placed order, through SMTP or, with no
//! SMTP server configured, as .eml files in a mail directory.

pub mod config;
pub mod db;
pub mod handler;
pub mod mailer;
pub mod routes;

pub use config::{Config, IDENTITY, Settings};
pub use handler::SendConfirmation;

use anyhow::Context;
use shared_events::app::ConsumerApp;
use shared_events::kafka::RetryPolicy;

pub type Application = ConsumerApp<SendConfirmation>;

pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let service = &settings.service;
    let mailer = mailer::Mailer::new(settings.smtp_url.as_deref(), &settings.mail_dir)?;
    let from = settings
        .mail_from
        .parse()
        .with_context(|| format!("MAIL_FROM={} is not a mailbox", settings.mail_from))?;
    let pool = shared_events::db::connect(service, &db::MIGRATOR).await?;
    let routes = routes::router(pool.clone());
    let handler = SendConfirmation { mailer, from };
    ConsumerApp::build(service, pool, handler, routes, RetryPolicy::default()).await
}
