//! The `gemini-proxy` binary: read settings, start logging, build, run.

use gemini_proxy::keys::file::load_clients;
use gemini_proxy::keys::KeyHash;
use gemini_proxy::quota::{QuotaLimits, WindowKind};
use gemini_proxy::settings::Settings;
use gemini_proxy::startup::Application;
use gemini_proxy::telemetry;
use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "\
usage: gemini-proxy [command]

commands:
  serve          run the service (the default)
  demo           run the service against the bundled mock Gemini, with the
                 client key `demo-key` (no Gemini key needed)
  hash-key       read a client key on stdin, print its `key_sha256` line for
                 the keys file
  check-config   validate the settings and the keys file, print a summary
                 (no secrets), exit non-zero on error
  healthcheck    ask the running service's GET /health on $HOST:$PORT
                 (loopback when HOST is 0.0.0.0 or ::; over TLS when
                 TLS_CERT_FILE and TLS_KEY_FILE are set);
                 exit 0 when it answers 200 (for container health checks)
  version        print the version
  help           print this text

Settings come from the environment and a .env file (see docs/configuration.md).";

/// `gemini-proxy demo`: the service in front of the bundled mock Gemini.
#[cfg(feature = "demo")]
mod demo {
    use gemini_mock::{MockConfig, MockGemini};
    use std::collections::HashMap;

    /// The client key the demo accepts.
    const DEMO_CLIENT_KEY: &str = "demo-key";

    /// Starts the mock and points the settings at it.
    pub async fn start(overrides: &mut HashMap<&str, String>) -> Result<MockGemini, String> {
        let mock = MockGemini::start(MockConfig::default())
            .await
            .map_err(|e| format!("cannot start the mock Gemini: {e}"))?;
        overrides.insert("GEMINI_BASE_URL", mock.base_url());
        overrides.insert("GEMINI_API_KEY", "demo-server-key".into());
        overrides.insert("API_KEYS", DEMO_CLIENT_KEY.into());
        overrides.insert("KEYS_FILE", String::new());
        if std::env::var("HOST").is_err() {
            overrides.insert("HOST", "127.0.0.1".into());
        }
        Ok(mock)
    }

    pub fn announce(mock: &MockGemini, port: u16, scheme: &str) {
        log::info!(
            "demo mode: Gemini is the bundled mock at {}",
            mock.base_url()
        );
        println!(
            "Try it:\n  curl -sS {scheme}://127.0.0.1:{port}/gemini-proxy -H 'X-API-KEY: {DEMO_CLIENT_KEY}' \
             -H 'Content-Type: application/json' -d '{{\"prompt\": \"What is the capital of France?\"}}'"
        );
    }
}

/// Without the `demo` feature there is no mock to start.
#[cfg(not(feature = "demo"))]
mod demo {
    use std::collections::HashMap;

    pub struct NoMock;

    pub async fn start(_: &mut HashMap<&str, String>) -> Result<NoMock, String> {
        Err("this build has no demo".into())
    }

    pub fn announce(_: &NoMock, _: u16, _: &str) {}
}

fn main() -> ExitCode {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => {
            eprintln!("gemini-proxy: cannot read .env: {e}");
            return ExitCode::FAILURE;
        }
    }
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => serve(false),
        #[cfg(feature = "demo")]
        Some("demo") => serve(true),
        #[cfg(not(feature = "demo"))]
        Some("demo") => {
            eprintln!("gemini-proxy: this build has no demo (built without the `demo` feature)");
            ExitCode::FAILURE
        }
        Some("hash-key") => hash_key(),
        Some("check-config") => check_config(),
        Some("healthcheck") => healthcheck(),
        Some("version" | "--version" | "-V") => {
            println!("gemini-proxy {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("gemini-proxy: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(demo: bool) -> ExitCode {
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let mut overrides: HashMap<&str, String> = HashMap::new();
        let mock = if demo {
            Some(demo::start(&mut overrides).await?)
        } else {
            None
        };
        let settings = Settings::from_lookup(|name| {
            overrides
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        })
        .map_err(|e| format!("invalid setting {e}"))?;
        telemetry::init(&settings.log_level, settings.log_format);
        gemini_proxy::middleware::panics::install_quiet_panic_hook();
        log::info!(
            "gemini-proxy {} starting: {}",
            env!("CARGO_PKG_VERSION"),
            settings.summary()
        );
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let app = Application::build(settings).map_err(|e| e.to_string())?;
        if let Some(mock) = &mock {
            demo::announce(mock, app.port(), scheme);
        }
        app.run_until_stopped().await.map_err(|e| e.to_string())?;
        log::info!("stopped");
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gemini-proxy: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The container's health check, without curl in the image: one `GET
/// /health` on the loopback port the service listens on, over TLS when the
/// service serves TLS (`TLS_CERT_FILE` and `TLS_KEY_FILE` both set).
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    use std::time::Duration;
    let port = match std::env::var("PORT").ok().map(|p| p.trim().parse::<u16>()) {
        None => 5001,
        Some(Ok(port)) if port != 0 => port,
        Some(_) => {
            eprintln!("gemini-proxy healthcheck: PORT is not a port to call");
            return ExitCode::FAILURE;
        }
    };
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let tls = set("TLS_CERT_FILE") && set("TLS_KEY_FILE");
    let timeout = Duration::from_secs(2);
    let answer = (|| -> std::io::Result<String> {
        // The service's own address when it listens on one, else loopback.
        let host = std::env::var("HOST")
            .ok()
            .and_then(|h| h.trim().parse::<std::net::IpAddr>().ok())
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let address = std::net::SocketAddr::new(host, port);
        let stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut stream: Box<dyn ReadWrite> = if tls {
            Box::new(gemini_proxy::tls::probe::connect(stream, host)?)
        } else {
            Box::new(stream)
        };
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 64];
        let read = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..read]).into_owned())
    })();
    match answer {
        Ok(head) if head.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!(
                "gemini-proxy healthcheck: /health answered {}",
                head.lines().next().unwrap_or_default()
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            let over = if tls { " (TLS)" } else { "" };
            eprintln!("gemini-proxy healthcheck: no answer on port {port}{over}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A connection the health check talks over, plain or TLS.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn hash_key() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input) {
        eprintln!("gemini-proxy hash-key: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let key = input.trim_end_matches(['\r', '\n']);
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        eprintln!("gemini-proxy hash-key: give one key (visible ASCII, no spaces) on stdin");
        return ExitCode::FAILURE;
    }
    println!("key_sha256 = \"{}\"", hex::encode(KeyHash::of(key).0));
    ExitCode::SUCCESS
}

fn check_config() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("gemini-proxy check-config: invalid setting {e}");
            return ExitCode::FAILURE;
        }
    };
    let clients = match load_clients(&settings.keys_file, &settings.api_keys) {
        Ok(clients) => clients,
        Err(e) => {
            eprintln!("gemini-proxy check-config: keys file {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("settings: {}", settings.summary());
    println!("{} clients:", clients.len());
    for client in &clients {
        let models = client.models.as_ref().map_or_else(
            || "any".to_owned(),
            |m| m.iter().cloned().collect::<Vec<_>>().join(", "),
        );
        let quotas: String = quota_summary(&client.quotas.total)
            .iter()
            .map(|q| format!(", {q}"))
            .collect();
        println!(
            "  {}: {}/min, burst {}{quotas}, models: {}, own Gemini key: {}",
            client.name,
            client.limits.requests_per_minute,
            client.limits.burst,
            models,
            if client.allow_own_key {
                "allowed"
            } else {
                "refused"
            }
        );
        for group in &client.quotas.groups {
            println!(
                "    quota group {} ({}): {}",
                group.name,
                group.models.iter().cloned().collect::<Vec<_>>().join(", "),
                quota_summary(&group.limits).join(", ")
            );
        }
    }
    println!("configuration OK");
    ExitCode::SUCCESS
}

/// A scope's quotas as `check-config` prints them (`tokens/min 400000`).
fn quota_summary(limits: &QuotaLimits) -> Vec<String> {
    limits
        .windows()
        .map(|(kind, limit)| {
            let name = match kind {
                WindowKind::TokensPerMinute => "tokens/min",
                WindowKind::RequestsPerDay => "requests/day",
                WindowKind::TokensPerDay => "tokens/day",
            };
            format!("{name} {limit}")
        })
        .collect()
}
