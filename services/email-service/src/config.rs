use std::path::PathBuf;

use shared_events::config::{CommonArgs, ServiceIdentity, ServiceSettings};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "email-service",
    database: "email",
    http_port: 8083,
};

#[derive(Debug, clap::Parser)]
#[command(
    name = "email-service",
    about = "Mails every customer how their order ended: a confirmation, or a cancellation notice with the reason"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// SMTP server to send through, e.g. smtp://localhost:1025. Unset: write .eml files to MAIL_DIR.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Where mails are written when no SMTP server is configured.
    #[arg(long, env = "MAIL_DIR", default_value = ".data/mail")]
    pub mail_dir: PathBuf,
    /// The sender of every mail.
    #[arg(long, env = "MAIL_FROM", default_value = "Shop <shop@example.com>")]
    pub mail_from: String,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub service: ServiceSettings,
    pub smtp_url: Option<String>,
    pub mail_dir: PathBuf,
    pub mail_from: String,
}

impl Config {
    pub fn into_settings(self) -> Settings {
        Settings {
            service: ServiceSettings::from_args(IDENTITY, self.common),
            smtp_url: self.smtp_url,
            mail_dir: self.mail_dir,
            mail_from: self.mail_from,
        }
    }
}
