//! The HTTP client each upstream actor owns, with every awc default that is wrong
//! for an LLM proxy set deliberately (docs/architecture.md#awcs-defaults-are-wrong-for-an-llm-proxy).

use super::egress::{Proxy, ProxyConnector};
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use awc::{Client, Connector};
use std::sync::{Arc, Once};
use std::time::Duration;

/// Unary bodies above this are refused as `UPSTREAM_ERROR` (docs/upstream.md#retries-and-deadlines).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Idle keep-alive connections are closed after this; Google's front end keeps
/// idle connections for longer, so ours is the one that decides.
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Connections are recycled after this, so DNS changes on Google's side are picked up.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Installs ring as rustls' crypto provider once per process; awc's rustls
/// features enable none, and building a client without one panics (docs/architecture.md#the-tls-crypto-provider).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    tls_config_with(&[b"h2", b"http/1.1"])
}

fn tls_config_with(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Set here, not with max_http_version(), which would replace this config (docs/architecture.md#alpn-in-our-own-rustls-config).
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Builds a client; call it on the thread that will use it (awc clients are
/// `!Send`). With `proxy`, every connection is a tunnel through it.
pub fn build(connect_timeout: Duration, proxy: Option<&Proxy>) -> Client {
    with_tls(connect_timeout, tls_config(), proxy)
}

/// The client of the Live API's WebSockets: a WebSocket upgrade is HTTP/1.1,
/// so it offers no `h2`, which a server would otherwise pick.
pub fn build_for_websockets(connect_timeout: Duration, proxy: Option<&Proxy>) -> Client {
    with_tls(connect_timeout, tls_config_with(&[b"http/1.1"]), proxy)
}

fn with_tls(
    connect_timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
) -> Client {
    install_crypto_provider();
    match proxy {
        None => finish(Connector::new(), connect_timeout, tls),
        Some(proxy) => finish(
            Connector::new().connector(ProxyConnector::new(proxy.clone(), connect_timeout)),
            connect_timeout,
            tls,
        ),
    }
}

/// The same settings whichever TCP connector opens the connections.
fn finish<S, Io>(
    connector: Connector<S>,
    connect_timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
) -> Client
where
    Io: actix_rt::net::ActixStream + std::fmt::Debug + 'static,
    S: actix_service::Service<
            ConnectInfo<Uri>,
            Response = Connection<Uri, Io>,
            Error = ConnectError,
        > + Clone
        + 'static,
{
    let connector = connector
        .rustls_0_23(tls)
        .timeout(connect_timeout)
        .handshake_timeout(connect_timeout)
        // Admission control bounds concurrency; a pool limit here would only queue.
        .limit(0)
        .conn_keep_alive(KEEP_ALIVE)
        .conn_lifetime(CONNECTION_LIFETIME);
    Client::builder()
        .connector(connector)
        // A redirect would carry the key elsewhere; treat it as a bad answer instead.
        .disable_redirects()
        // The caller enforces one deadline over headers and body together.
        .disable_timeout()
        .add_default_header((
            awc::http::header::USER_AGENT,
            concat!("gemini-proxy/", env!("CARGO_PKG_VERSION")),
        ))
        .finish()
}
