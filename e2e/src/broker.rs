//! A real Kafka-protocol broker for the tests: Tansu locally, Apache Kafka in Docker.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ImageExt};
use testcontainers_modules::kafka::apache::{KAFKA_PORT, Kafka};

use crate::Backend;
use crate::images::Image;

pub enum Broker {
    Tansu(Tansu),
    Docker {
        container: Box<ContainerAsync<Kafka>>,
        port: u16,
    },
}

impl Broker {
    pub async fn start(backend: Backend) -> Broker {
        match backend {
            Backend::Tansu => Broker::Tansu(Tansu::start()),
            Backend::Docker => {
                // A fixed host port survives a container restart, so clients can reconnect.
                let port = free_port();
                let image = Image::kafka();
                let container = Kafka::default()
                    .with_jvm_image()
                    .with_name(image.name)
                    .with_tag(image.tag)
                    .with_mapped_port(port, KAFKA_PORT)
                    .start()
                    .await
                    .expect("cannot start the Apache Kafka container");
                Broker::Docker {
                    container: Box::new(container),
                    port,
                }
            }
        }
    }

    pub fn bootstrap_servers(&self) -> String {
        match self {
            Broker::Tansu(tansu) => format!("{}:{}", tansu.host, tansu.port),
            Broker::Docker { port, .. } => format!("127.0.0.1:{port}"),
        }
    }

    /// Stops the broker process; its data stays for [`Broker::restart`].
    pub async fn stop(&mut self) {
        match self {
            Broker::Tansu(tansu) => tansu.stop(),
            Broker::Docker { container, .. } => container
                .stop_with_timeout(Some(5))
                .await
                .expect("cannot stop the Kafka container"),
        }
    }

    /// Starts the broker again on the same address with the same data.
    pub async fn restart(&mut self) {
        match self {
            Broker::Tansu(tansu) => tansu.spawn(),
            Broker::Docker { container, port } => {
                container
                    .start()
                    .await
                    .expect("cannot restart the Kafka container");
                wait_for_port(*port);
            }
        }
    }
}

/// A Tansu broker process with durable sqlite storage in a temporary directory.
pub struct Tansu {
    /// What clients are told to connect to: `127.0.0.1`, or `localhost` with TLS (the name
    /// the broker's certificate carries).
    host: &'static str,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// With TLS: the certificate chain and key files.
    tls: Option<(PathBuf, PathBuf)>,
    /// Clients must authenticate (SASL PLAIN or SCRAM).
    authentication: bool,
}

impl Tansu {
    fn start() -> Tansu {
        let mut tansu = Tansu {
            host: "127.0.0.1",
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("shop-tansu-")
                .tempdir()
                .expect("cannot create a temp dir"),
            child: None,
            tls: None,
            authentication: false,
        };
        tansu.spawn();
        tansu
    }

    /// A broker that speaks only TLS (with `cert` and `key`, for `localhost`) and admits
    /// only clients that authenticate as one of `users` (SCRAM-SHA-512 `(name, password)`).
    ///
    /// `tansu user create` cannot authenticate itself, so the users are created while the
    /// broker runs without authentication on its own data, which it keeps when it is
    /// restarted with authentication and TLS.
    pub fn start_secure(cert: PathBuf, key: PathBuf, users: &[(&str, &str)]) -> Tansu {
        let mut tansu = Tansu::start();
        for (name, password) in users {
            let broker = format!("tcp://127.0.0.1:{}", tansu.port);
            let output = Command::new(tansu_binary())
                .args([
                    "user",
                    "create",
                    "--broker",
                    &broker,
                    "--mechanism",
                    "scram512",
                ])
                .args([name, password])
                .output()
                .expect("cannot run tansu user create");
            assert!(
                output.status.success(),
                "tansu user create {name} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tansu.stop();
        tansu.host = "localhost";
        tansu.tls = Some((cert, key));
        tansu.authentication = true;
        tansu.spawn();
        tansu
    }

    /// Serves the next start with another certificate (rotated, or signed by another CA).
    pub fn set_certificate(&mut self, cert: PathBuf, key: PathBuf) {
        self.tls = Some((cert, key));
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "Tansu is already running");
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://{}:{}", self.host, self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("cannot open the Tansu log");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(self.tls.iter().flat_map(|(cert, key)| {
                [
                    "--cert".as_ref(),
                    cert.as_os_str(),
                    "--key".as_ref(),
                    key.as_os_str(),
                ]
            }))
            .args(self.authentication.then_some("--authentication"))
            // A relative sqlite path: Tansu resolves it against its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .env(
                "RUST_LOG",
                std::env::var("SHOP_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::from(
                log.try_clone().expect("cannot share the log file"),
            ))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", tansu_binary().display()));
        self.child = Some(child);
        wait_for_port(self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
        if let Ok(keep) = std::env::var("SHOP_TANSU_KEEP") {
            let _ = std::fs::copy(
                self.dir.path().join("tansu.log"),
                format!("{keep}-{}.log", self.port),
            );
        }
    }
}

/// `TANSU_BIN`, else the patched build `scripts/install-tansu.sh` keeps in its cache.
pub fn tansu_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("TANSU_BIN") {
                return bin.into();
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-tansu.sh");
            let output = Command::new("bash")
                .arg(&script)
                .arg("--path")
                .output()
                .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
            let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            assert!(
                output.status.success() && bin.exists(),
                "no Tansu broker at {:?}: run scripts/install-tansu.sh once (scripts/test.sh \
                 does) or set TANSU_BIN",
                bin
            );
            bin
        })
        .clone()
}

/// A port nobody listens on right now. Tansu panics if its port is taken, so each broker
/// gets its own.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind an ephemeral port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "broker did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
