//! Mail over TLS: implicit TLS (`smtps://`) and STARTTLS (`?tls=required`) against a small
//! SMTP server of the test's own, with a certificate from a CA the test made; and every way
//! of getting it wrong refused at start-up with the cause.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use email_service::mailer::{Mailer, SmtpSettings};
use lettre::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use shop_runtime::secret::Secret;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const USER: &str = "shop";
const PASSWORD: &str = "mail-secret";

/// A CA, and a certificate for `localhost` it signed.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    acceptor: TlsAcceptor,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "mail test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    Pki {
        dir,
        ca: ca_path,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Implicit,
    StartTls,
}

/// An SMTP server on 127.0.0.1 that speaks TLS as `mode` says, takes `USER`/`PASSWORD`, and
/// keeps every message it is given.
async fn smtp_server(mode: Mode, acceptor: TlsAcceptor) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let kept = kept.clone();
            tokio::spawn(async move {
                let _ = match mode {
                    Mode::Implicit => match acceptor.accept(stream).await {
                        Ok(tls) => session(BufReader::new(tls), true, true, &kept).await,
                        Err(_) => Ok(None),
                    },
                    Mode::StartTls => {
                        match session(BufReader::new(stream), true, false, &kept).await {
                            Ok(Some(plain)) => match acceptor.accept(plain.into_inner()).await {
                                Ok(tls) => session(BufReader::new(tls), false, true, &kept)
                                    .await
                                    .map(|_| None),
                                Err(_) => Ok(None),
                            },
                            other => other.map(|_| None),
                        }
                    }
                };
            });
        }
    });
    (port, received)
}

/// One SMTP dialogue. Before TLS it offers only STARTTLS and hands the stream back when the
/// client asks for it; within TLS it takes AUTH PLAIN or LOGIN and messages.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: BufReader<S>,
    greet: bool,
    secure: bool,
    kept: &Mutex<Vec<String>>,
) -> std::io::Result<Option<BufReader<S>>> {
    // A new connection is greeted; one just upgraded by STARTTLS is not.
    if greet {
        stream
            .get_mut()
            .write_all(b"220 localhost ESMTP test\r\n")
            .await?;
    }
    let mut authenticated = false;
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" if secure => b"250-localhost\r\n250 AUTH PLAIN LOGIN\r\n",
            "EHLO" | "HELO" => b"250-localhost\r\n250 STARTTLS\r\n",
            "STARTTLS" if !secure => {
                stream.get_mut().write_all(b"220 go ahead\r\n").await?;
                return Ok(Some(stream));
            }
            "AUTH" if secure => {
                let mut parts = command.split(' ').skip(1);
                let credentials = match parts.next().map(str::to_ascii_uppercase).as_deref() {
                    Some("PLAIN") => decode(parts.next().unwrap_or_default()),
                    Some("LOGIN") => {
                        stream.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                        let user = read_decoded(&mut stream).await?;
                        stream.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let password = read_decoded(&mut stream).await?;
                        format!("\0{user}\0{password}")
                    }
                    _ => String::new(),
                };
                authenticated = credentials == format!("\0{USER}\0{PASSWORD}");
                if authenticated {
                    b"235 ok\r\n"
                } else {
                    b"535 authentication failed\r\n"
                }
            }
            "MAIL" if !authenticated => b"530 authenticate first\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
            "DATA" => {
                stream.get_mut().write_all(b"354 go on\r\n").await?;
                let mut message = String::new();
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await? == 0 {
                        return Ok(None);
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    message.push_str(&line);
                }
                kept.lock().unwrap().push(message);
                b"250 kept\r\n"
            }
            "QUIT" => {
                stream.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(None);
            }
            _ => b"502 not here\r\n",
        };
        stream.get_mut().write_all(reply).await?;
    }
}

async fn read_decoded<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
) -> std::io::Result<String> {
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    Ok(decode(line.trim_end()))
}

fn decode(base64: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in base64.bytes().filter(|b| *b != b'=') {
        let Some(value) = ALPHABET.iter().position(|a| *a == byte) else {
            return String::new();
        };
        bits = (bits << 6) | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn message(subject: &str) -> Message {
    Message::builder()
        .from("shop@example.com".parse().unwrap())
        .to("ada@example.com".parse().unwrap())
        .subject(subject)
        .body(String::from("Your order is confirmed."))
        .unwrap()
}

fn settings(url: String, ca: Option<&PathBuf>, password: &str) -> SmtpSettings {
    SmtpSettings {
        url: Secret::new(url),
        username: Some(USER.to_owned()),
        password: Some(Secret::new(password)),
        ca_file: ca.cloned(),
    }
}

async fn send_through(settings: &SmtpSettings, subject: &str) -> anyhow::Result<()> {
    let mailer = Mailer::new(Some(settings), std::path::Path::new("."))?;
    mailer.check(Duration::from_secs(5)).await?;
    mailer.send(uuid::Uuid::new_v4(), message(subject)).await
}

#[tokio::test]
async fn mail_goes_over_implicit_tls_to_a_server_signed_by_a_private_ca() {
    let pki = pki();
    let (port, received) = smtp_server(Mode::Implicit, pki.acceptor.clone()).await;
    let settings = settings(format!("smtps://localhost:{port}"), Some(&pki.ca), PASSWORD);
    send_through(&settings, "over smtps").await.unwrap();
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].contains("Subject: over smtps"),
        "{}",
        received[0]
    );
    drop(pki.dir);
}

#[tokio::test]
async fn mail_goes_over_starttls_when_the_url_requires_it() {
    let pki = pki();
    let (port, received) = smtp_server(Mode::StartTls, pki.acceptor.clone()).await;
    let settings = settings(
        format!("smtp://localhost:{port}?tls=required"),
        Some(&pki.ca),
        PASSWORD,
    );
    send_through(&settings, "over starttls").await.unwrap();
    assert_eq!(received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_a_host_it_does_not_name_or_a_refused_login_fails_the_start_up_check()
 {
    let pki = pki();
    let (port, received) = smtp_server(Mode::Implicit, pki.acceptor.clone()).await;
    for (what, settings, cause) in [
        (
            "no CA file: Mozilla's roots do not know the test CA",
            settings(format!("smtps://localhost:{port}"), None, PASSWORD),
            "cannot use the SMTP server",
        ),
        (
            "the certificate names localhost, not 127.0.0.1",
            settings(format!("smtps://127.0.0.1:{port}"), Some(&pki.ca), PASSWORD),
            "cannot use the SMTP server",
        ),
        (
            "a wrong password",
            settings(format!("smtps://localhost:{port}"), Some(&pki.ca), "wrong"),
            "cannot use the SMTP server",
        ),
    ] {
        let mailer = Mailer::new(Some(&settings), std::path::Path::new(".")).unwrap();
        let started = std::time::Instant::now();
        let err = mailer.check(Duration::from_secs(5)).await.expect_err(what);
        let shown = format!("{err:#}");
        assert!(shown.contains(cause), "{what}: {shown}");
        assert!(
            !shown.contains(PASSWORD),
            "{what}: the password shows: {shown}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: took {:?}",
            started.elapsed()
        );
    }
    assert!(received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_server_that_is_down_at_start_up_only_warns() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = SmtpSettings::url(&format!("smtp://127.0.0.1:{port}"));
    let mailer = Mailer::new(Some(&settings), std::path::Path::new(".")).unwrap();
    mailer.check(Duration::from_secs(5)).await.unwrap();
}
