//! The secured shop for the tests: a broker that speaks only TLS and admits only SCRAM users,
//! one user per principal of [`shop_runtime::access`], and PostgreSQL over TLS.
//!
//! Certificates are made here, per test, with rcgen: a CA, and a certificate for `localhost`
//! (and no IP address, so a client that connects to 127.0.0.1 must fail the host-name
//! check). Nothing is committed.
//!
//! The broker (Tansu) enforces TLS and authentication, but it accepts ACLs without enforcing
//! them: these tests prove that every service connects as its own user over TLS, not what a
//! user may do. The grants themselves are checked against the code by the compose and
//! Kubernetes tests, and enforced only by a real Kafka cluster.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use shop_runtime::access::{self, Principal};
use shop_runtime::kafka::security::{
    KafkaSecurity, KafkaSecurityArgs, SaslMechanism, SecurityProtocol,
};
use shop_runtime::secret::Secret;

/// A certificate authority of the test's own, and what it signed, as PEM files in a
/// temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The broker's certificate (for `localhost`) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A CA named `name` and a `localhost` certificate it signed.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("shop-pki-")
            .tempdir()
            .expect("cannot create a temp dir");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("a self-signed CA");
        let issuer = Issuer::new(ca, &ca_key);

        let key = KeyPair::generate().expect("a broker key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("broker parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params
            .signed_by(&key, &issuer)
            .expect("a signed certificate");

        let write = |file: &str, pem: String| {
            let path = dir.path().join(file);
            std::fs::write(&path, pem).expect("cannot write a PEM file");
            path
        };
        Pki {
            ca: write("ca.crt", ca_cert.pem()),
            cert: write("broker.crt", cert.pem()),
            key: write("broker.key", key.serialize_pem()),
            dir,
        }
    }
}

/// Every principal's SCRAM password for one test, made up anew so that a leak test can look
/// for them, and the settings each connects with.
pub struct Credentials {
    passwords: Vec<(&'static str, String)>,
    pub ca: PathBuf,
}

impl Credentials {
    pub fn new(ca: &Path) -> Credentials {
        let users = access::PRINCIPALS
            .iter()
            .map(|p| p.user)
            .chain([access::ADMIN]);
        Credentials {
            passwords: users
                .map(|user| {
                    let password = format!("pw-{user}-{}", uuid::Uuid::new_v4().simple());
                    (user, password)
                })
                .collect(),
            ca: ca.to_owned(),
        }
    }

    /// `(user, password)` of every principal and the admin, for creating them.
    pub fn users(&self) -> Vec<(&str, &str)> {
        self.passwords
            .iter()
            .map(|(user, password)| (*user, password.as_str()))
            .collect()
    }

    pub fn password(&self, user: &str) -> &str {
        self.passwords
            .iter()
            .find(|(name, _)| *name == user)
            .map(|(_, password)| password.as_str())
            .unwrap_or_else(|| panic!("no user {user}"))
    }

    /// SASL_SSL with SCRAM-SHA-512 as `principal`.
    pub fn security(&self, principal: &Principal) -> KafkaSecurity {
        self.security_as(principal.user, self.password(principal.user))
    }

    /// SASL_SSL with SCRAM-SHA-512 as `user` with `password` (right or wrong).
    pub fn security_as(&self, user: &str, password: &str) -> KafkaSecurity {
        KafkaSecurity::from_args(&self.args(user, password)).expect("valid security settings")
    }

    /// The arguments behind [`Credentials::security_as`].
    pub fn args(&self, user: &str, password: &str) -> KafkaSecurityArgs {
        KafkaSecurityArgs {
            kafka_security_protocol: SecurityProtocol::SaslSsl,
            kafka_sasl_mechanism: Some(SaslMechanism::ScramSha512),
            kafka_sasl_username: Some(user.to_owned()),
            kafka_sasl_password: Some(Secret::new(password)),
            kafka_ssl_ca_location: Some(self.ca.clone()),
            ..KafkaSecurityArgs::default()
        }
    }

    /// The same as environment variables, for a service process; the password through a
    /// file, as Kubernetes mounts it.
    pub fn env(&self, principal: &Principal, dir: &Path) -> Vec<(String, String)> {
        let file = dir.join(format!("{}.password", principal.user));
        std::fs::write(&file, format!("{}\n", self.password(principal.user)))
            .expect("cannot write a password file");
        vec![
            ("KAFKA_SECURITY_PROTOCOL".into(), "SASL_SSL".into()),
            ("KAFKA_SASL_MECHANISM".into(), "SCRAM-SHA-512".into()),
            ("KAFKA_SASL_USERNAME".into(), principal.user.into()),
            (
                "KAFKA_SASL_PASSWORD_FILE".into(),
                file.display().to_string(),
            ),
            (
                "KAFKA_SSL_CA_LOCATION".into(),
                self.ca.display().to_string(),
            ),
        ]
    }
}

/// The certificate the local PostgreSQL serves (`SHOW ssl_cert_file`), to trust as a root:
/// Debian's self-signed "snakeoil" certificate for `localhost`. Panics, saying so, when the
/// server does not have TLS switched on.
pub async fn postgres_certificate(server_url: &str) -> PathBuf {
    let pool = sqlx::PgPool::connect(&format!("{server_url}/postgres"))
        .await
        .expect("cannot connect to PostgreSQL");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&pool)
        .await
        .expect("SHOW ssl");
    assert_eq!(
        ssl, "on",
        "the local PostgreSQL has ssl = off: the secured tests need it on (Debian's default)"
    );
    let file: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&pool)
        .await
        .expect("SHOW ssl_cert_file");
    let data: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&pool)
        .await
        .expect("SHOW data_directory");
    pool.close().await;
    // A relative path is relative to the data directory.
    let file = Path::new(&data).join(file);
    assert!(
        std::fs::File::open(&file).is_ok(),
        "cannot read PostgreSQL's certificate {}",
        file.display()
    );
    file
}

/// `url` (`postgres://user@127.0.0.1:port/db`) over TLS, verifying that the server's
/// certificate is signed by `root` and names `host`.
pub fn postgres_tls_url(url: &str, host: &str, root: &Path) -> String {
    let mut parsed = url::Url::parse(url).expect("a PostgreSQL URL");
    parsed.set_host(Some(host)).expect("a host");
    parsed
        .query_pairs_mut()
        .append_pair("sslmode", "verify-full")
        .append_pair("sslrootcert", &root.display().to_string());
    parsed.to_string()
}
