//! Opening a TCP stream to Gemini through a proxy. Whatever goes wrong is an
//! `io::Error` whose message names the proxy by `host:port` only (never its
//! user or password) and says what the proxy did, in words.

use super::proxy::{Kind, Proxy};
use super::{http_connect, socks};
use std::io;
use std::time::Duration;
use tokio::net::TcpStream;

/// A TCP stream to `host:port` through `proxy`, ready for TLS, within `timeout`
/// (proxy connection and handshake together).
pub async fn connect(
    proxy: &Proxy,
    host: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let tunnel = async {
        match proxy.kind {
            Kind::HttpConnect => http_connect::tunnel(proxy, host, port).await,
            Kind::Socks5 | Kind::Socks5h => socks::tunnel(proxy, host, port).await,
        }
    };
    match tokio::time::timeout(timeout, tunnel).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the egress proxy {} did not open a tunnel within {} s",
                proxy.address(),
                timeout.as_secs_f32()
            ),
        )),
    }
}

/// The TCP connection to the proxy itself.
pub(super) async fn to_proxy(proxy: &Proxy) -> io::Result<TcpStream> {
    let host = proxy.host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((host, proxy.port)).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "could not connect to the egress proxy {}: {e}",
                proxy.address()
            ),
        )
    })?;
    // A tunnel carries request bytes as they are written; Nagle would hold them back.
    stream.set_nodelay(true)?;
    Ok(stream)
}
