//! `scripts/run-local.sh` as a terminal drives it: Ctrl-C is SIGINT to the script's whole
//! process group. Everything must stop, the broker included, within seconds, and the next run
//! must start at once on the same ports.

use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Long enough for a first run to build nothing (the binaries are built before the tests)
/// and start a broker and five services.
const START: Duration = Duration::from_secs(180);
/// How soon after Ctrl-C every process must be gone.
const STOP: Duration = Duration::from_secs(20);
/// The HTTP ports the script gives the five services and the dashboard.
const SERVICE_PORTS: [u16; 6] = [8080, 8081, 8082, 8083, 8084, 8088];

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Starts the script in a process group of its own, as a shell starts a foreground job.
fn start(data_dir: &Path, kafka_port: u16, log: &Path) -> Child {
    start_with(data_dir, kafka_port, log, &[])
}

fn start_with(data_dir: &Path, kafka_port: u16, log: &Path, args: &[&str]) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(repository().join("scripts/run-local.sh"))
        .args(["--data-dir".as_ref(), data_dir.as_os_str()])
        .args(args)
        .env("KAFKA_PORT", kafka_port.to_string())
        .current_dir(repository())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("cannot start scripts/run-local.sh")
}

/// Starts `scripts/run-local.sh 2>&1 | tee <log>` in a process group of its own, as a shell
/// starts a pipeline: Ctrl-C ends tee as well, and then nothing reads what the script writes.
fn start_piped_through_tee(data_dir: &Path, kafka_port: u16, log: &Path) -> Child {
    Command::new("bash")
        .args(["-c", r#""$0" --data-dir "$1" 2>&1 | tee "$2""#])
        .arg(repository().join("scripts/run-local.sh"))
        .arg(data_dir)
        .arg(log)
        .env("KAFKA_PORT", kafka_port.to_string())
        .current_dir(repository())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("cannot start scripts/run-local.sh | tee")
}

fn wait_until_running(script: &mut Child, log: &Path) {
    let deadline = Instant::now() + START;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("shop is running") {
            return;
        }
        if let Some(status) = script.try_wait().unwrap() {
            panic!("run-local.sh exited with {status} before it was running:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "run-local.sh not running after {START:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ctrl-C, then waits for the whole group to be gone; returns how long that took.
fn interrupt(script: &mut Child, log: &Path) -> Duration {
    let group = Pid::from_raw(script.id() as i32);
    let sent = Instant::now();
    killpg(group, Signal::SIGINT).expect("SIGINT to the script's process group");
    loop {
        let _ = script.try_wait();
        // The broker runs in a session of its own; it is checked through its port below.
        if killpg(group, None) == Err(Errno::ESRCH) {
            return sent.elapsed();
        }
        if sent.elapsed() > STOP {
            let _ = killpg(group, Signal::SIGKILL);
            panic!(
                "processes of run-local.sh still running {STOP:?} after Ctrl-C:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_stops_every_process_of_a_local_run_broker_included_and_the_next_run_starts_at_once() {
    let data_dir = tempfile::Builder::new()
        .prefix("shop-run-local-")
        .tempdir()
        .unwrap();
    let log = data_dir.path().join("run-local.log");
    let kafka_port = e2e::broker::free_port();
    for port in SERVICE_PORTS {
        assert!(
            !listening(port),
            "port {port} is in use: stop the local run before running this test"
        );
    }

    for run in 1..=2 {
        let mut script = start(&data_dir.path().join("data"), kafka_port, &log);
        wait_until_running(&mut script, &log);
        assert!(listening(kafka_port), "run {run}: the broker listens");

        let took = interrupt(&mut script, &log);
        let status = script.wait().unwrap();
        eprintln!("run {run}: stopped {took:?} after Ctrl-C ({status})");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("stopped"),
            "run {run} says it stopped:\n{text}"
        );
        // The broker outlives the services on purpose; it must still be gone soon after.
        let deadline = Instant::now() + STOP;
        while listening(kafka_port) {
            assert!(
                Instant::now() < deadline,
                "run {run}: the broker still listens on {kafka_port} after Ctrl-C:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for port in SERVICE_PORTS {
            assert!(!listening(port), "run {run}: port {port} still taken");
        }
    }
}

#[test]
fn ctrl_c_on_a_local_run_piped_through_tee_still_stops_the_broker() {
    let data_dir = tempfile::Builder::new()
        .prefix("shop-run-local-tee-")
        .tempdir()
        .unwrap();
    let log = data_dir.path().join("run-local.log");
    let kafka_port = e2e::broker::free_port();
    for port in SERVICE_PORTS {
        assert!(
            !listening(port),
            "port {port} is in use: stop the local run before running this test"
        );
    }

    let mut script = start_piped_through_tee(&data_dir.path().join("data"), kafka_port, &log);
    wait_until_running(&mut script, &log);
    assert!(listening(kafka_port), "the broker listens");

    // tee is gone at once; the script's clean-up must still stop the services, then the broker.
    let took = interrupt(&mut script, &log);
    let status = script.wait().unwrap();
    eprintln!("stopped {took:?} after Ctrl-C ({status})");
    let deadline = Instant::now() + STOP;
    while listening(kafka_port) {
        assert!(
            Instant::now() < deadline,
            "the broker still listens on {kafka_port} after Ctrl-C:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for port in SERVICE_PORTS {
        assert!(!listening(port), "port {port} still taken");
    }
}

#[tokio::test]
async fn a_secured_local_run_confirms_an_order_with_kafka_over_tls_and_a_scram_user_per_service() {
    let data_dir = tempfile::Builder::new()
        .prefix("shop-run-local-secure-")
        .tempdir()
        .unwrap();
    let data = data_dir.path().join("data");
    let log = data_dir.path().join("run-local.log");
    let kafka_port = e2e::broker::free_port();
    for port in SERVICE_PORTS {
        assert!(
            !listening(port),
            "port {port} is in use: stop the local run first"
        );
    }
    let mut script = start_with(&data, kafka_port, &log, &["--secure"]);
    wait_until_running(&mut script, &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("TLS and SASL/SCRAM"), "{text}");
    // Every principal got its own password file, and the broker its certificate.
    for user in shop_runtime::access::PRINCIPALS.iter().map(|p| p.user) {
        let file = data.join("secure").join(format!("{user}.password"));
        assert!(file.exists(), "no password for {user}");
    }

    let http = reqwest::Client::new();
    let placed: serde_json::Value = http
        .post("http://127.0.0.1:8080/orders")
        .json(
            &serde_json::json!({"customer_id": "cust-s", "customer_email": "ada@example.com",
                                  "items": [{"sku": "KB-001", "quantity": 1}]}),
        )
        .send()
        .await
        .expect("POST /orders")
        .json()
        .await
        .unwrap();
    let id = placed["id"].as_str().expect("an order id").to_owned();
    e2e::eventually(
        "the order to be confirmed",
        Duration::from_secs(60),
        || async {
            let order: serde_json::Value = http
                .get(format!("http://127.0.0.1:8080/orders/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (order["status"] == "confirmed").then_some(())
        },
    )
    .await;

    interrupt(&mut script, &log);
    let _ = script.wait();
}

#[test]
fn the_secured_local_run_creates_exactly_the_shops_topics() {
    let script = std::fs::read_to_string(repository().join("scripts/lib/secure.sh")).unwrap();
    let line = script
        .lines()
        .find_map(|line| line.strip_prefix("secure_topics=("))
        .expect("secure.sh lists its topics");
    let mut listed: Vec<&str> = line.trim_end_matches(')').split_whitespace().collect();
    let mut expected = shop_runtime::topics::EVERY.to_vec();
    listed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(listed, expected);
}
