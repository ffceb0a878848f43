//! The HTTP `CONNECT` handshake (RFC 9110 §9.3.6): ask the proxy for a
//! tunnel, read its status line and headers, and hand back the stream with
//! nothing of the tunnel's own bytes consumed.

use super::connect::to_proxy;
use super::proxy::Proxy;
use base64::Engine;
use secrecy::ExposeSecret;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy's answer head larger than this is not a proxy worth waiting for.
const MAX_HEAD_BYTES: usize = 16 * 1024;

pub async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> io::Result<TcpStream> {
    let mut stream = to_proxy(proxy).await?;
    let target = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let pair = format!(
            "{}:{}",
            credentials.user,
            credentials.password.expose_secret()
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;

    let head = read_head(&mut stream, proxy).await?;
    let status = status_code(&head).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the egress proxy {} answered CONNECT with something that is not HTTP",
                proxy.address()
            ),
        )
    })?;
    match status {
        200..=299 => Ok(stream),
        // 407 is the standard answer; tinyproxy, among others, answers 401.
        // Either way it is the proxy's: the tunnel to Gemini is not open yet.
        401 | 407 => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the egress proxy {} asked for authentication ({status}): {}",
                proxy.address(),
                if proxy.credentials.is_some() {
                    "it refused the user and password given"
                } else {
                    "give `user:password@` in the proxy URL"
                }
            ),
        )),
        _ => Err(io::Error::other(format!(
            "the egress proxy {} refused the tunnel to {target} with status {status}",
            proxy.address()
        ))),
    }
}

/// Reads up to the blank line that ends the answer's head, one byte at a
/// time: after a 200 the next bytes are the tunnel's, and a buffered read
/// could swallow them.
async fn read_head(stream: &mut TcpStream, proxy: &Proxy) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the egress proxy {} sent an endless answer head",
                    proxy.address()
                ),
            ));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the egress proxy {} closed the connection before answering CONNECT",
                    proxy.address()
                ),
            ));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// `HTTP/1.1 200 Connection established` → 200.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}
