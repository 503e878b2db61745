//! The services as separate processes: the real binaries, configured through their
//! environment as in production, so a test can `SIGKILL` or `SIGTERM` them.
//!
//! The binaries are the ones Cargo builds next to the test executable (`target/<profile>/`);
//! the harness runs `cargo build --workspace --bins` once per test process, so they are never
//! older than their sources (`scripts/test.sh` builds them up front, outside any test).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Service;

/// How long a process may take to answer `/readyz` after it starts, and to exit after
/// `SIGTERM`.
const PATIENCE: Duration = Duration::from_secs(60);

/// One instance of a service, running as a child process. It keeps its HTTP port across
/// restarts, so clients can carry on with the same URL.
pub struct ServiceProcess {
    /// `inventory-service[1]` and the like.
    name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Describes an instance of `binary` with its environment; [`ServiceProcess::start`]
    /// runs it. Its output goes to `log`, appended across restarts.
    pub fn new(name: String, binary: &str, env: Vec<(String, String)>, log: PathBuf) -> Self {
        let port = service_port();
        let mut env = env;
        env.push(("HTTP_ADDR".into(), format!("127.0.0.1:{port}")));
        ServiceProcess {
            name,
            binary: service_binary(binary),
            env,
            port,
            log,
            child: None,
        }
    }

    /// Adds an environment variable for the next start.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the process and waits until it is ready: HTTP up, database reachable.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("cannot open the service log");
        // Only what the test sets: nothing leaks in from the test runner's environment
        // (scripts/test.sh exports a DATABASE_URL of its own).
        let child = Command::new(&self.binary)
            .env_clear()
            .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("cannot share the log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.binary.display()));
        self.child = Some(child);
        self.wait_until_ready().await;
    }

    async fn wait_until_ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.exit_status() {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            let ready = http
                .get(self.url("/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} was not ready within {PATIENCE:?}:\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `SIGKILL`: the process dies at once, wherever it was, committing nothing more.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the process is running");
        child.kill().expect("cannot SIGKILL the service");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("waiting task")
            .expect("cannot reap the service");
        tracing::info!(service = %self.name, %status, "killed");
        self.wait_until_port_free().await;
    }

    /// `SIGTERM`, as an orchestrator sends it; returns how the process exited.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the process is running");
        signal(&child, Signal::SIGTERM);
        let name = self.name.clone();
        let status = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + PATIENCE;
            loop {
                if let Some(status) = child.try_wait().expect("cannot reap the service") {
                    return status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{name} did not exit within {PATIENCE:?} of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .expect("waiting task");
        tracing::info!(service = %self.name, %status, "terminated");
        status
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().expect("cannot poll the service"))
    }

    /// Until nothing listens on the port, so the next start can bind it.
    async fn wait_until_port_free(&self) {
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
            assert!(Instant::now() < deadline, "port {} stayed busy", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `lines` lines the process logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(file) = std::fs::File::open(&self.log) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Service for ServiceProcess {
    fn name(&self) -> &str {
        &self.name
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            );
        }
    }
}

fn signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    kill(pid, signal).unwrap_or_else(|err| panic!("cannot send {signal} to {pid}: {err}"));
}

/// A free port below the kernel's ephemeral range (32768 and up on Linux), so that while the
/// service is down no outgoing connection can take it and keep the restart from binding it.
fn service_port() -> u16 {
    for _ in 0..100 {
        let candidate = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, candidate)).is_ok() {
            return candidate;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// The service binary beside this test executable (`target/<profile>/`), built first: once
/// per test process, Cargo brings every service binary up to date (a no-op when it is), so a
/// test never runs a binary older than its sources.
pub fn service_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let profile_dir = BUILT.get_or_init(|| {
        let test_exe = std::env::current_exe().expect("the test executable has a path");
        // target/<profile>/deps/<test>-<hash> → target/<profile>
        let profile_dir = test_exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps")
            .to_owned();
        let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("cannot tell the profile of {}", profile_dir.display()),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--workspace",
                "--bins",
                "--locked",
                "--profile",
                profile,
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cannot run cargo to build the services");
        assert!(
            status.success(),
            "cargo could not build the service binaries"
        );
        profile_dir
    });
    profile_dir.join(name)
}
