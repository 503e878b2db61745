use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use shop_runtime::secret::{Secret, redact_url};
use uuid::Uuid;

/// Where mails go.
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `<order id>.eml` per order: rewriting the same order's file is harmless.
    Directory(PathBuf),
}

/// How to reach an SMTP server, and who to be there.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://host[:port]` (plain, port 25), `smtp://host:587?tls=required` (STARTTLS, or
    /// `tls=opportunistic`), `smtps://host[:port]` (implicit TLS, port 465). A user and
    /// password in it are used unless `username`/`password` are given.
    pub url: Secret,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM certificates to trust besides the built-in (Mozilla's) roots: a private CA.
    pub ca_file: Option<PathBuf>,
}

impl SmtpSettings {
    /// Just a URL (as in tests, or with the credentials in it).
    pub fn url(url: &str) -> Self {
        SmtpSettings {
            url: Secret::new(url),
            username: None,
            password: None,
            ca_file: None,
        }
    }
}

impl Mailer {
    /// The mailer the settings describe: an SMTP transport (checked first: see
    /// [`Mailer::check`]), or a directory of `.eml` files without one.
    pub fn new(smtp: Option<&SmtpSettings>, mail_dir: &Path) -> anyhow::Result<Self> {
        match smtp {
            Some(smtp) => {
                let shown = redact_url(smtp.url.expose());
                let transport = smtp_transport(smtp)
                    .with_context(|| format!("SMTP_URL={shown} is not a usable SMTP URL"))?;
                tracing::info!(url = %shown, "sending mail through SMTP");
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

    /// Connects to the SMTP server once, as a send would (TLS, then login). A certificate
    /// that is not trusted, a host name it does not name, or refused credentials end start-up
    /// with the cause: no retry can fix them. A server that is down only warns: mails are
    /// retried and then parked like any failing event, and replayed once it is back.
    pub async fn check(&self, timeout: Duration) -> anyhow::Result<()> {
        let Mailer::Smtp(transport) = self else {
            return Ok(());
        };
        match tokio::time::timeout(timeout, transport.test_connection()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) if is_misconfiguration(&err) => Err(anyhow::Error::new(err).context(
                "cannot use the SMTP server: check SMTP_URL, SMTP_CA_FILE, SMTP_USERNAME \
                     and SMTP_PASSWORD",
            )),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "SMTP server not reachable now; mails will be retried");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "SMTP server did not answer; mails will be retried"
                );
                Ok(())
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

/// Whether an SMTP error is one no retry can fix: a refused login (a permanent 5xx reply) or a
/// TLS handshake that failed, such as a certificate not trusted or not for the host.
fn is_misconfiguration(err: &lettre::transport::smtp::Error) -> bool {
    // A client error: no login mechanism both sides speak, say (a server that offers AUTH only
    // after STARTTLS, to a client told not to use it).
    if err.is_tls() || err.is_permanent() || err.is_client() {
        return true;
    }
    // A failed handshake comes back as a connection error; its cause says what failed.
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains("certificate") || text.contains("handshake") {
            return true;
        }
        source = cause.source();
    }
    false
}

fn smtp_transport(smtp: &SmtpSettings) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let url = url::Url::parse(smtp.url.expose()).map_err(|_| anyhow::anyhow!("not a URL"))?;
    let host = url.host_str().context("no host")?.to_owned();
    let tls_mode = url
        .query_pairs()
        .find(|(key, _)| key == "tls")
        .map(|(_, value)| value.into_owned());
    let parameters = || -> anyhow::Result<TlsParameters> {
        let mut builder = TlsParameters::builder(host.clone());
        if let Some(path) = &smtp.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read SMTP_CA_FILE={}", path.display()))?;
            let certificate = Certificate::from_pem(&pem).with_context(|| {
                format!("SMTP_CA_FILE={} holds no PEM certificate", path.display())
            })?;
            builder = builder.add_root_certificate(certificate);
        }
        builder.build_rustls().context("cannot set up TLS")
    };
    let encrypted = matches!(
        (url.scheme(), tls_mode.as_deref()),
        ("smtps", None) | ("smtp", Some("required"))
    );
    let (port, tls) = match (url.scheme(), tls_mode.as_deref()) {
        ("smtps", None) => (465, Tls::Wrapper(parameters()?)),
        ("smtp", None | Some("none")) => (25, Tls::None),
        ("smtp", Some("required")) => (587, Tls::Required(parameters()?)),
        ("smtp", Some("opportunistic")) => (587, Tls::Opportunistic(parameters()?)),
        ("smtp" | "smtps", Some(other)) => anyhow::bail!(
            "tls={other} is not one of required, opportunistic, none (and smtps:// is always TLS)"
        ),
        (other, _) => anyhow::bail!("only smtp:// and smtps:// are supported, not {other}://"),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
        .port(url.port().unwrap_or(port))
        .tls(tls)
        .timeout(Some(Duration::from_secs(10)));
    let username = smtp
        .username
        .clone()
        .or_else(|| (!url.username().is_empty()).then(|| percent_decode(url.username())));
    let password = smtp
        .password
        .as_ref()
        .map(|p| p.expose().to_owned())
        .or_else(|| url.password().map(percent_decode));
    match (username, password) {
        (Some(username), password) => {
            // A password sent in clear text, or over a STARTTLS an attacker can strip, is a
            // password given away; only a relay on this machine is exempt.
            let local = matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1");
            anyhow::ensure!(
                encrypted || local,
                "an SMTP login would cross the network unencrypted: use smtps:// or \
                 ?tls=required"
            );
            builder = builder.credentials(Credentials::new(username, password.unwrap_or_default()));
        }
        (None, Some(_)) => anyhow::bail!("SMTP_PASSWORD is set but no SMTP user is"),
        (None, None) => {}
    }
    Ok(builder.build())
}

/// `%40` and friends in a URL's user or password, as a URL must carry `@` or `:`.
fn percent_decode(part: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", part.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_scheme_or_tls_mode_is_refused_with_the_reason_and_without_the_password() {
        let err = Mailer::new(
            Some(&SmtpSettings::url("imap://user:hunter2@mail.example.com")),
            Path::new("."),
        )
        .err()
        .unwrap();
        let shown = format!("{err:#}");
        assert!(shown.contains("only smtp:// and smtps://"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let err = Mailer::new(
            Some(&SmtpSettings::url("smtp://mail.example.com?tls=sometimes")),
            Path::new("."),
        )
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("tls=sometimes"), "{err:#}");
    }

    #[tokio::test]
    async fn smtps_starttls_and_plain_urls_make_transports() {
        for url in [
            "smtps://mail.example.com",
            "smtp://mail.example.com:587?tls=required",
            "smtp://mail.example.com:587?tls=opportunistic",
            "smtp://user:p%40ss@localhost:1025",
        ] {
            let mailer = Mailer::new(Some(&SmtpSettings::url(url)), Path::new("."));
            assert!(mailer.is_ok(), "{url}: {:#}", mailer.err().unwrap());
        }
    }

    #[test]
    fn a_login_over_plain_or_opportunistic_smtp_to_another_host_is_refused() {
        for url in [
            "smtp://user:secret@mail.example.com:25",
            "smtp://user:secret@mail.example.com:587?tls=opportunistic",
        ] {
            let err = Mailer::new(Some(&SmtpSettings::url(url)), Path::new("."))
                .err()
                .unwrap_or_else(|| panic!("{url} was taken"));
            let shown = format!("{err:#}");
            assert!(shown.contains("unencrypted"), "{shown}");
            assert!(!shown.contains("secret"), "{shown}");
        }
    }

    #[test]
    fn a_url_encoded_password_is_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aw+rd"), "p@ss:w+rd");
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
