//! SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), by
//! tokio-socks over a TCP stream opened here (so the proxy's own address
//! resolves like any other and the same timeout covers both).

use super::connect::to_proxy;
use super::proxy::{Kind, Proxy};
use secrecy::ExposeSecret;
use std::io;
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;
use tokio_socks::TargetAddr;

pub async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> io::Result<TcpStream> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if proxy.kind == Kind::Socks5h {
        return through(proxy, TargetAddr::Domain(bare.to_owned().into(), port)).await;
    }
    // socks5://: resolved here, each address tried in turn, as a direct connection would.
    let mut last = None;
    for address in tokio::net::lookup_host((bare, port)).await? {
        match through(proxy, TargetAddr::Ip(address)).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("`{bare}` resolves to no address"),
        )
    }))
}

async fn through(proxy: &Proxy, target: TargetAddr<'static>) -> io::Result<TcpStream> {
    let socket = to_proxy(proxy).await?;
    let opened = match &proxy.credentials {
        Some(credentials) => {
            Socks5Stream::connect_with_password_and_socket(
                socket,
                target,
                &credentials.user,
                credentials.password.expose_secret(),
            )
            .await
        }
        None => Socks5Stream::connect_with_socket(socket, target).await,
    };
    opened
        .map(Socks5Stream::into_inner)
        .map_err(|e| socks_error(proxy, e))
}

/// The proxy's reply, in words; the kind tells the pipeline what it means.
fn socks_error(proxy: &Proxy, error: tokio_socks::Error) -> io::Error {
    use tokio_socks::Error as E;
    let address = proxy.address();
    let (kind, what) = match error {
        E::Io(e) => {
            return io::Error::new(
                e.kind(),
                format!("the connection to the SOCKS5 proxy {address} broke: {e}"),
            )
        }
        E::PasswordAuthFailure(_) => (
            io::ErrorKind::PermissionDenied,
            "refused the user and password given".to_owned(),
        ),
        E::NoAcceptableAuthMethods | E::AuthorizationRequired => (
            io::ErrorKind::PermissionDenied,
            if proxy.credentials.is_some() {
                "accepts none of the authentication methods offered".to_owned()
            } else {
                "asked for authentication: give `user:password@` in the proxy URL".to_owned()
            },
        ),
        E::ConnectionRefused => (
            io::ErrorKind::ConnectionRefused,
            "could not connect to Gemini: connection refused".to_owned(),
        ),
        E::HostUnreachable | E::NetworkUnreachable => (
            io::ErrorKind::Other,
            format!("could not reach Gemini: {error}"),
        ),
        other => (io::ErrorKind::Other, format!("answered: {other}")),
    };
    io::Error::new(kind, format!("the SOCKS5 proxy {address} {what}"))
}
