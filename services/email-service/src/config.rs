use std::path::PathBuf;

use shop_runtime::config::{CommonArgs, ServiceIdentity, ServiceSettings};
use shop_runtime::secret::{self, Secret};

use crate::mailer::SmtpSettings;

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
    /// SMTP server to send through: smtp://localhost:1025 (plain), smtp://host:587?tls=required
    /// (STARTTLS), smtps://host:465 (TLS). Unset: write .eml files to MAIL_DIR.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// A file holding SMTP_URL.
    #[arg(long, env = "SMTP_URL_FILE")]
    pub smtp_url_file: Option<PathBuf>,
    /// The SMTP user [default: the one in SMTP_URL].
    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// The SMTP password [default: the one in SMTP_URL].
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<Secret>,
    /// A file holding SMTP_PASSWORD.
    #[arg(long, env = "SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,
    /// PEM certificates to trust for the SMTP server's TLS, besides the built-in roots.
    #[arg(long, env = "SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
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
    /// `None`: write `.eml` files to `mail_dir`.
    pub smtp: Option<SmtpSettings>,
    pub mail_dir: PathBuf,
    pub mail_from: String,
}

impl Config {
    /// Reads the files the settings name and checks them, naming the variable at fault.
    pub fn into_settings(self) -> Result<Settings, String> {
        let url = secret::resolve("SMTP_URL", self.smtp_url, self.smtp_url_file.as_deref())?;
        let password = secret::resolve(
            "SMTP_PASSWORD",
            self.smtp_password,
            self.smtp_password_file.as_deref(),
        )?;
        let smtp = match url {
            Some(url) => Some(SmtpSettings {
                url,
                username: self.smtp_username,
                password,
                ca_file: self.smtp_ca_file,
            }),
            None if self.smtp_username.is_some() || password.is_some() => {
                return Err("SMTP_USERNAME or SMTP_PASSWORD is set without SMTP_URL".to_owned());
            }
            None => None,
        };
        Ok(Settings {
            service: ServiceSettings::from_args(IDENTITY, self.common)?,
            smtp,
            mail_dir: self.mail_dir,
            mail_from: self.mail_from,
        })
    }
}
