//! The HTTP client each upstream actor owns, with every awc default that is wrong
//! for an LLM proxy set deliberately (docs/architecture.md#awcs-defaults-are-wrong-for-an-llm-proxy).

use super::egress::{Proxy, ProxyConnector};
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use awc::{Client, Connector};
use rustls::pki_types::TrustAnchor;
use std::sync::{Arc, Once};
use std::time::Duration;

/// Unary bodies above this are refused as `UPSTREAM_ERROR` (docs/upstream.md#retries-and-deadlines).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// What every upstream request names itself, over awc and the HTTP/2 pool alike.
pub const USER_AGENT: &str = concat!("gemini-proxy/", env!("CARGO_PKG_VERSION"));
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

/// How every upstream client connects: the connect (and TLS handshake)
/// timeout, and the TLS configurations with the roots it trusts. Built once
/// at start-up and shared by every actor: the configurations are immutable,
/// and sharing them shares the TLS session cache too.
#[derive(Clone)]
pub struct UpstreamConnect {
    timeout: Duration,
    http: Arc<rustls::ClientConfig>,
    websocket: Arc<rustls::ClientConfig>,
}

impl UpstreamConnect {
    /// The trust and ALPN of every call, awc's and the HTTP/2 pool's.
    pub fn http_tls(&self) -> &Arc<rustls::ClientConfig> {
        &self.http
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The built-in (webpki) roots plus `extra_roots` (`UPSTREAM_CA_FILE`).
    pub fn new(timeout: Duration, extra_roots: &[TrustAnchor<'static>]) -> UpstreamConnect {
        install_crypto_provider();
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        roots.extend(extra_roots.iter().cloned());
        let roots = Arc::new(roots);
        UpstreamConnect {
            timeout,
            http: tls_config(&roots, &[b"h2", b"http/1.1"]),
            // A WebSocket upgrade is HTTP/1.1, so no `h2`, which a server would otherwise pick.
            websocket: tls_config(&roots, &[b"http/1.1"]),
        }
    }
}

fn tls_config(roots: &Arc<rustls::RootCertStore>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    // Set here, not with max_http_version(), which would replace this config (docs/architecture.md#alpn-in-our-own-rustls-config).
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Builds a client; call it on the thread that will use it (awc clients are
/// `!Send`). With `proxy`, every connection is a tunnel through it.
pub fn build(connect: &UpstreamConnect, proxy: Option<&Proxy>) -> Client {
    with_tls(connect.timeout, connect.http.clone(), proxy)
}

/// The client of the Live API's WebSockets, which offers HTTP/1.1 only.
pub fn build_for_websockets(connect: &UpstreamConnect, proxy: Option<&Proxy>) -> Client {
    with_tls(connect.timeout, connect.websocket.clone(), proxy)
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
        .add_default_header((awc::http::header::USER_AGENT, USER_AGENT))
        .finish()
}
