use std::path::{Path, PathBuf};

use anyhow::Context;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

/// Where mails go.
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `<order id>.eml` per order: rewriting the same order's file is harmless.
    Directory(PathBuf),
}

impl Mailer {
    pub fn new(smtp_url: Option<&str>, mail_dir: &Path) -> anyhow::Result<Self> {
        match smtp_url {
            Some(url) => {
                let transport = smtp_transport(url)
                    .with_context(|| format!("SMTP_URL={url} is not a usable SMTP URL"))?;
                tracing::info!(%url, "sending mail through SMTP");
                Ok(Mailer::Smtp(transport))
            }
            None => {
                std::fs::create_dir_all(mail_dir)
                    .with_context(|| format!("cannot create MAIL_DIR={}", mail_dir.display()))?;
                tracing::info!(dir = %mail_dir.display(), "no SMTP_URL: writing mail as .eml files");
                Ok(Mailer::Directory(mail_dir.to_owned()))
            }
        }
    }

    /// A short name for what `send` goes through, stored with each sent mail.
    pub fn transport(&self) -> &'static str {
        match self {
            Mailer::Smtp(_) => "smtp",
            Mailer::Directory(_) => "maildir",
        }
    }

    pub async fn send(&self, order_id: Uuid, message: Message) -> anyhow::Result<()> {
        match self {
            Mailer::Smtp(transport) => {
                transport
                    .send(message)
                    .await
                    .context("SMTP server refused or unreachable")?;
            }
            Mailer::Directory(dir) => {
                // Written aside and renamed, so a reader never sees half a message.
                let path = dir.join(format!("{order_id}.eml"));
                let partial = dir.join(format!(".{order_id}.eml.partial"));
                tokio::fs::write(&partial, message.formatted())
                    .await
                    .with_context(|| format!("cannot write {}", partial.display()))?;
                tokio::fs::rename(&partial, &path)
                    .await
                    .with_context(|| format!("cannot move mail to {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// `smtp://[user:password@]host[:port]`: plain SMTP, as a local mail catcher speaks it.
/// TLS is not built in; a relay with TLS belongs in front of this service.
fn smtp_transport(raw: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let url = url::Url::parse(raw)?;
    anyhow::ensure!(
        url.scheme() == "smtp",
        "only smtp:// is supported, not {}://",
        url.scheme()
    );
    let host = url.host_str().context("no host")?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(url.port().unwrap_or(25));
    if !url.username().is_empty() {
        let password = url.password().unwrap_or_default();
        builder = builder.credentials(Credentials::new(
            url.username().to_owned(),
            password.to_owned(),
        ));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_smtps_url_is_refused_with_the_reason() {
        let err = Mailer::new(Some("smtps://mail.example.com"), Path::new("."))
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains("only smtp:// is supported"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn without_smtp_each_confirmation_is_one_eml_file_named_after_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::new(None, dir.path()).unwrap();
        let order_id = Uuid::new_v4();
        let message = || {
            Message::builder()
                .from("shop@example.com".parse().unwrap())
                .to("ada@example.com".parse().unwrap())
                .subject("hello")
                .body(String::from("body"))
                .unwrap()
        };
        mailer.send(order_id, message()).await.unwrap();
        mailer.send(order_id, message()).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, [std::ffi::OsString::from(format!("{order_id}.eml"))]);
    }
}
