//! The `gemini-proxy` binary: read settings, start logging, build, run.

use gemini_proxy::mock::{MockConfig, MockGemini};
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
  version        print the version
  help           print this text

Settings come from the environment and a .env file (see README.md).";

/// The client key the demo accepts.
const DEMO_CLIENT_KEY: &str = "demo-key";

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
        Some("demo") => serve(true),
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
            Some(mock)
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
        log::info!("gemini-proxy {} starting: {}", env!("CARGO_PKG_VERSION"), settings.summary());
        let app = Application::build(settings).map_err(|e| e.to_string())?;
        if let Some(mock) = &mock {
            log::info!("demo mode: Gemini is the bundled mock at {}", mock.base_url());
            println!(
                "Try it:\n  curl -sS http://127.0.0.1:{}/gemini-proxy -H 'X-API-KEY: {DEMO_CLIENT_KEY}' \
                 -H 'Content-Type: application/json' -d '{{\"prompt\": \"What is the capital of France?\"}}'",
                app.port()
            );
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
