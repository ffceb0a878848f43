//! `mock-gemini`: the offline Gemini mock as its own process, for benchmarks and demos
//! where the proxy runs as a binary too. Configured by environment variables; prints one
//! line with its address once bound (scripts wait for it), and runs until SIGINT/SIGTERM.
//!
//! MOCK_HOST (127.0.0.1), MOCK_PORT (8089; 0 picks a free port), MOCK_WORKERS (1),
//! MOCK_FIRST_BYTE_DELAY_MS (0), MOCK_CHUNK_DELAY_MS (0), MOCK_CHUNKS (3),
//! MOCK_CHUNK_TEXT_BYTES (unset: the answer split over the events),
//! MOCK_SPLIT_USAGE (false; true cuts every usage object across two body chunks),
//! MOCK_RECORD (true; false keeps memory flat under load); for the Live API,
//! MOCK_LIVE_BINARY (false), MOCK_LIVE_FAULT (unset; a `LiveFault` name such as `goaway`),
//! MOCK_LIVE_CHUNKS (3), MOCK_LIVE_CHUNK_BYTES (unset), MOCK_LIVE_DELAY_MS (0); for
//! batches and interactions, MOCK_BATCH_DELAY_MS (1000) and MOCK_INTERACTION_DELAY_MS
//! (1000, background interactions only).
//! files, MOCK_UPLOAD_URL_GOOGLE (false; true hands out upload URLs and file URIs on
//! Google's origin) and MOCK_FILE_PROCESSING_MS (0: new files are ACTIVE at once).
//!
//! TLS: MOCK_TLS (false; true serves `https://` with a certificate for 127.0.0.1 and
//! localhost signed by a CA made at start), MOCK_TLS_CA_FILE (where the CA's PEM
//! certificate is written, for the client to trust: the proxy's `UPSTREAM_CA_FILE`;
//! required with MOCK_TLS), MOCK_TLS_ALPN (`both`, `h2` or `http/1.1`; default `both`).

use std::io::{self, Write};
use std::net::TcpListener;
use std::str::FromStr;
use std::time::Duration;

use gemini_mock::{Alpn, MockConfig, MockGemini};

/// Parses an optional variable, failing start-up with a message that names it.
fn var<T: FromStr>(name: &str, default: T) -> io::Result<T> {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}={raw:?} is not a valid value"),
            )
        }),
        _ => Ok(default),
    }
}

/// Like `var`, for a setting whose absence means "off".
fn optional<T: FromStr>(name: &str) -> io::Result<Option<T>> {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw.trim().parse().map(Some).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}={raw:?} is not a valid value"),
            )
        }),
        _ => Ok(None),
    }
}

fn flag(name: &str, default: bool) -> io::Result<bool> {
    match std::env::var(name) {
        Ok(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "" => Ok(default),
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}={raw:?}: use true or false"),
            )),
        },
        Err(_) => Ok(default),
    }
}

fn config() -> io::Result<MockConfig> {
    Ok(MockConfig {
        first_byte_delay: Duration::from_millis(var("MOCK_FIRST_BYTE_DELAY_MS", 0)?),
        chunk_delay: Duration::from_millis(var("MOCK_CHUNK_DELAY_MS", 0)?),
        chunks: var("MOCK_CHUNKS", 3)?,
        chunk_text_bytes: optional("MOCK_CHUNK_TEXT_BYTES")?,
        split_usage: flag("MOCK_SPLIT_USAGE", false)?,
        record: flag("MOCK_RECORD", true)?,
        live_binary: flag("MOCK_LIVE_BINARY", false)?,
        live_fault: optional("MOCK_LIVE_FAULT")?,
        live_chunks: var("MOCK_LIVE_CHUNKS", 3)?,
        live_chunk_bytes: optional("MOCK_LIVE_CHUNK_BYTES")?,
        live_delay: Duration::from_millis(var("MOCK_LIVE_DELAY_MS", 0)?),
        batch_delay: Duration::from_millis(var("MOCK_BATCH_DELAY_MS", 1000)?),
        interaction_delay: Duration::from_millis(var("MOCK_INTERACTION_DELAY_MS", 1000)?),
        upload_url_google: flag("MOCK_UPLOAD_URL_GOOGLE", false)?,
        file_processing: Duration::from_millis(var("MOCK_FILE_PROCESSING_MS", 0)?),
        ..MockConfig::default()
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn alpn() -> io::Result<Alpn> {
    match std::env::var("MOCK_TLS_ALPN").unwrap_or_default().trim() {
        "" | "both" => Ok(Alpn::Both),
        "h2" => Ok(Alpn::H2),
        "http/1.1" => Ok(Alpn::Http1),
        other => Err(invalid(format!(
            "MOCK_TLS_ALPN={other:?}: use both, h2 or http/1.1"
        ))),
    }
}

/// Starts the mock, with TLS when MOCK_TLS says so (writing the CA first, so a
/// script that waits for the address line finds the file there).
async fn start(
    listener: TcpListener,
    config: MockConfig,
    workers: usize,
) -> io::Result<MockGemini> {
    if !flag("MOCK_TLS", false)? {
        return MockGemini::start_on(listener, config, workers).await;
    }
    let Some(ca_file) = optional::<String>("MOCK_TLS_CA_FILE")? else {
        return Err(invalid(
            "MOCK_TLS_CA_FILE is required with MOCK_TLS: where to write the CA certificate clients must trust".into(),
        ));
    };
    let mock = MockGemini::start_tls_on(listener, config, workers, alpn()?).await?;
    let pem = mock.ca_pem().unwrap_or_default();
    std::fs::write(&ca_file, pem)
        .map_err(|e| io::Error::new(e.kind(), format!("MOCK_TLS_CA_FILE={ca_file:?}: {e}")))?;
    Ok(mock)
}

async fn shutdown_signal() -> io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[actix_rt::main]
async fn main() -> io::Result<()> {
    let host: String = var("MOCK_HOST", "127.0.0.1".to_owned())?;
    let port: u16 = var("MOCK_PORT", 8089)?;
    let workers: usize = var("MOCK_WORKERS", 1)?;
    let config = config()?;
    let listener = TcpListener::bind((host.as_str(), port))?;
    let mock = start(listener, config, workers).await?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "mock-gemini listening on {}", mock.base_url())?;
        out.flush()?;
    }
    shutdown_signal().await?;
    mock.stop().await;
    Ok(())
}
