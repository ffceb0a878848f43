//! Starting the real service on port 0 against the bundled mock Gemini, and a
//! small HTTP client for the tests.

use awc::http::Method;
use bytes::Bytes;
pub use gemini_mock::testing::{client, connect, send_to, TestResponse};
use gemini_mock::{MockConfig, MockGemini, RecordedRequest};
use gemini_proxy::settings::Settings;
use gemini_proxy::startup::{AppControl, Application, Options};
use governor::clock::FakeRelativeClock;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Many servers share the test process: none of them handles signals.
const IN_PROCESS: Options = Options {
    handle_signals: false,
};

pub const CLIENT_KEY: &str = "client-key-0123456789abcdef";
pub const SERVER_KEY: &str = "AIzaServerKey0123456789abcdefghijklmnop";

/// A running service and the mock behind it.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// The separate `/metrics` listener's port, with `METRICS_ADDR`.
    pub metrics_port: Option<u16>,
    pub mock: MockGemini,
    /// Reload the keys file, count rate-limit buckets.
    pub control: AppControl,
    handle: actix_web::dev::ServerHandle,
}

/// The envelope checks of the service's own errors.
pub trait EnvelopeExt {
    /// The code of an error envelope, after checking the envelope's shape.
    fn error_code(&self) -> String;
}

impl EnvelopeExt for TestResponse {
    fn error_code(&self) -> String {
        let body = self.json();
        assert_eq!(body["result"], "Failed", "{body}");
        let errors = body["errors"].as_array().expect("errors is an array");
        assert_eq!(errors.len(), 1, "{body}");
        assert!(
            errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        errors[0]["code"]
            .as_str()
            .expect("code is a string")
            .to_owned()
    }
}

/// The service's error code in any of its three shapes (envelope, Google's
/// `ErrorInfo.reason` of domain `gemini-proxy`, OpenAI's `error.code`); `None`
/// for a body the service did not write.
pub fn code_of(response: &TestResponse) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(&response.body).ok()?;
    let code = if body["result"] == "Failed" {
        body["errors"][0]["code"].as_str()
    } else if let Some(details) = body["error"]["details"].as_array() {
        details
            .iter()
            .find(|d| d["domain"] == "gemini-proxy")
            .and_then(|d| d["reason"].as_str())
    } else {
        body["error"]["code"].as_str()
    };
    code.map(str::to_owned)
}

/// Settings every test starts from: loopback, one client key, one server key.
pub fn base_settings(mock: &MockGemini) -> HashMap<String, String> {
    HashMap::from([
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("API_KEYS".into(), CLIENT_KEY.into()),
        ("GEMINI_API_KEY".into(), SERVER_KEY.into()),
        ("GEMINI_BASE_URL".into(), mock.base_url()),
        ("KEYS_FILE".into(), String::new()),
        ("WORKERS".into(), "2".into()),
        // Tests that keep daily usage name a file of their own.
        ("QUOTA_STATE_FILE".into(), "none".into()),
    ])
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the mock and the service; `configure` edits the settings map first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    spawn_app_with_clock(configure, None).await
}

/// As [`spawn_app_with`], with one clock the test moves by hand for the rate
/// limiter and the quota windows: the wall clock reads `anchor` plus the time
/// `clock` has moved.
pub async fn spawn_app_with_clocks(
    configure: impl FnOnce(&mut HashMap<String, String>),
    clock: FakeRelativeClock,
    anchor: jiff::Timestamp,
) -> TestApp {
    let moved = clock.clone();
    let wall = gemini_proxy::quota::WallClock::from_fn(move || {
        let elapsed: Duration = governor::clock::Clock::now(&moved).into();
        anchor
            .checked_add(jiff::SignedDuration::try_from(elapsed).expect("a short test"))
            .expect("in range")
    });
    spawn_app_full(configure, Some((clock, Some(wall)))).await
}

/// As [`spawn_app_with`], with a rate-limiter clock the test moves by hand.
pub async fn spawn_app_with_clock(
    configure: impl FnOnce(&mut HashMap<String, String>),
    clock: Option<FakeRelativeClock>,
) -> TestApp {
    spawn_app_full(configure, clock.map(|c| (c, None))).await
}

async fn spawn_app_full(
    configure: impl FnOnce(&mut HashMap<String, String>),
    clocks: Option<(FakeRelativeClock, Option<gemini_proxy::quota::WallClock>)>,
) -> TestApp {
    let mock = MockGemini::start(MockConfig::default())
        .await
        .expect("mock starts");
    spawn_app_in_front_of(mock, configure, clocks)
}

/// As [`spawn_app_with`], in front of a mock the test started itself (one
/// serving TLS, say).
pub async fn spawn_app_against(
    mock: MockGemini,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    spawn_app_in_front_of(mock, configure, None)
}

fn spawn_app_in_front_of(
    mock: MockGemini,
    configure: impl FnOnce(&mut HashMap<String, String>),
    clocks: Option<(FakeRelativeClock, Option<gemini_proxy::quota::WallClock>)>,
) -> TestApp {
    let mut settings = base_settings(&mock);
    configure(&mut settings);
    let settings = Settings::from_map(&settings).expect("valid settings");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let app = match clocks {
        Some((clock, Some(wall))) => {
            Application::build_with_clocks(settings, listener, IN_PROCESS, clock, wall)
        }
        Some((clock, None)) => Application::build_with_clock(settings, listener, IN_PROCESS, clock),
        None => Application::build_with_listener(settings, listener, IN_PROCESS),
    }
    .expect("app builds");
    let port = app.port();
    let metrics_port = app.metrics_port();
    let handle = app.handle();
    let control = app.control();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        metrics_port,
        mock,
        control,
        handle,
    }
}

impl TestApp {
    /// Stops the service as `SIGTERM` would, and waits until it has.
    pub async fn stop_gracefully(&self) {
        self.handle.stop(true).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command at once; nobody needs to wait for it.
        drop(self.handle.stop(false));
    }
}

impl TestApp {
    /// Sends any request and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        send_to(&self.address, method, path, headers, body).await
    }

    /// `POST /gemini-proxy` with the test client's key and a JSON body.
    pub async fn proxy(&self, body: &serde_json::Value) -> TestResponse {
        self.proxy_raw(&body.to_string()).await
    }

    pub async fn proxy_raw(&self, body: &str) -> TestResponse {
        self.request(
            Method::POST,
            "/gemini-proxy",
            &[
                ("X-API-KEY", CLIENT_KEY),
                ("Content-Type", "application/json"),
            ],
            body.to_owned(),
        )
        .await
    }

    /// `POST /gemini-proxy` from a client that gives up waiting for the
    /// answer's head after `patience` and goes away; panics if an answer came.
    pub async fn proxy_and_give_up(&self, body: &serde_json::Value, patience: Duration) {
        let impatient = awc::Client::builder().timeout(patience).finish();
        let sent = impatient
            .post(format!("{}/gemini-proxy", self.address))
            .insert_header(("X-API-KEY", CLIENT_KEY))
            .send_json(body)
            .await;
        assert!(
            sent.is_err(),
            "the call answered within {patience:?}: {body}"
        );
    }

    pub async fn metrics(&self) -> String {
        self.request(Method::GET, "/metrics", &[], "").await.text()
    }

    /// Gemini calls the mock received (control routes excluded).
    pub fn upstream_requests(&self) -> Vec<RecordedRequest> {
        self.mock.requests()
    }
}

/// Reads one whole response from `stream` (with `received` already read),
/// `None` when the connection closes first. The caller bounds the time.
pub async fn read_response(
    stream: &mut tokio::net::TcpStream,
    received: &mut Vec<u8>,
) -> Option<(u16, String, Bytes)> {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                let status = head.get(9..12)?.parse().ok()?;
                let body = Bytes::copy_from_slice(&received[end + 4..end + 4 + length]);
                received.drain(..end + 4 + length);
                return Some((status, head, body));
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// The value of one series in a Prometheus exposition, if present.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The service run as its real binary, with its logs captured.
pub struct BinaryApp {
    pub child: Child,
    pub address: String,
    logs: Arc<Mutex<String>>,
}

impl BinaryApp {
    /// Starts `gemini-proxy` with exactly these variables (plus PATH) and waits
    /// until it logs the address it listens on (`http://…`, or `https://…`
    /// with TLS).
    pub fn start(args: &[&str], env: &HashMap<String, String>) -> BinaryApp {
        BinaryApp::start_in(Path::new(env!("CARGO_TARGET_TMPDIR")), args, env)
    }

    /// As [`BinaryApp::start`], in working directory `dir` (where `.env` and the
    /// default `config/keys.toml` are looked for).
    pub fn start_in(dir: &Path, args: &[&str], env: &HashMap<String, String>) -> BinaryApp {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gemini-proxy"))
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let logs = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().expect("log lock");
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let started = Instant::now();
        let address = loop {
            let found = logs.lock().expect("log lock").lines().find_map(|line| {
                let at = line
                    .find("listening on http://")
                    .or_else(|| line.find("listening on https://"))?;
                // The URL ends at a space or, in a JSON log line, at its closing quote.
                let rest = &line[at + "listening on ".len()..];
                let end = rest.find(['"', ' ']).unwrap_or(rest.len());
                Some(rest[..end].trim().to_owned())
            });
            if let Some(address) = found {
                break address.replace("0.0.0.0", "127.0.0.1");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "binary exited with {status}: {}",
                    logs.lock().expect("log lock")
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "binary did not start: {}",
                logs.lock().expect("log lock")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        BinaryApp {
            child,
            address,
            logs,
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").clone()
    }

    /// The logs once they contain `what`, waiting up to 10 s: a line written
    /// after the answer went out (an access line) reaches the reader thread
    /// a moment later.
    pub async fn logs_with(&self, what: &str) -> String {
        let started = std::time::Instant::now();
        loop {
            let logs = self.logs();
            if logs.contains(what) {
                return logs;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no {what:?} in the logs:\n{logs}"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal to the child (by its PID, which this test started).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the child to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "binary did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinaryApp {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A run of the binary that must exit by itself (subcommands, refused
/// start-ups) is killed, by its own PID, past this.
pub const BINARY_EXIT_LIMIT: Duration = Duration::from_secs(15);

/// What a finished run of the binary left.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs the binary in `dir` with exactly `env` and `stdin`; kills it (by the
/// child's own PID) if it has not exited within [`BINARY_EXIT_LIMIT`].
pub fn run_binary_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &HashMap<String, String>,
    stdin: &str,
) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemini-proxy"))
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let read_all = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > BINARY_EXIT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`gemini-proxy {}` did not exit in {BINARY_EXIT_LIMIT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        elapsed: started.elapsed(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The binary's environment: loopback, port 0, test keys, no Gemini behind it.
pub fn offline_env() -> HashMap<String, String> {
    HashMap::from([
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("API_KEYS".into(), CLIENT_KEY.into()),
        ("GEMINI_API_KEY".into(), SERVER_KEY.into()),
        ("GEMINI_BASE_URL".into(), "http://127.0.0.1:9".into()),
    ])
}

/// Environment for the binary against a mock: loopback, port 0, test keys.
pub fn binary_env(mock: &MockGemini) -> HashMap<String, String> {
    let mut env = base_settings(mock);
    env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    env
}

/// Every 8-character window of `secret` that occurs in `text`: a leak of part
/// of a key counts as a leak.
pub fn leaked_fragments(text: &str, secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .map(|w| w.iter().collect::<String>())
        .filter(|fragment| text.contains(fragment.as_str()))
        .collect()
}
