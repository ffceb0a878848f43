//! One egress proxy as the operator wrote it, parsed once at start-up. Its
//! password is a secret from the moment it is read: the type prints itself
//! masked, and parse errors never repeat the text they were given.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// How the tunnel to Gemini is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `http://`: an HTTP `CONNECT` tunnel.
    HttpConnect,
    /// `socks5://`: SOCKS5, the target resolved here and sent as an IP.
    Socks5,
    /// `socks5h://`: SOCKS5, the target's host name sent for the proxy to resolve.
    Socks5h,
}

impl Kind {
    fn scheme(self) -> &'static str {
        match self {
            Kind::HttpConnect => "http",
            Kind::Socks5 => "socks5",
            Kind::Socks5h => "socks5h",
        }
    }
}

/// `user:password@` of a proxy URL, percent-decoded.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: SecretString,
}

/// An egress proxy.
#[derive(Clone)]
pub struct Proxy {
    pub kind: Kind,
    /// As written (an IPv6 address keeps its brackets).
    pub host: String,
    pub port: u16,
    pub credentials: Option<Credentials>,
}

impl Proxy {
    /// Parses `scheme://[user:password@]host:port`; a URL without a scheme is
    /// `http://`, as curl reads `HTTPS_PROXY`. The error never quotes `raw`,
    /// which may hold a password.
    pub fn parse(raw: &str) -> Result<Proxy, String> {
        let raw = raw.trim();
        let (scheme, rest) = raw.split_once("://").unwrap_or(("http", raw));
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => Kind::HttpConnect,
            "socks5" => Kind::Socks5,
            "socks5h" => Kind::Socks5h,
            "https" => {
                return Err("`https://` proxies (TLS to the proxy) are not supported; use `http://`, `socks5://` or `socks5h://`".into())
            }
            _ => {
                return Err(format!(
                    "unknown proxy scheme `{}`; use `http://`, `socks5://` or `socks5h://`",
                    scheme.chars().take(16).collect::<String>()
                ))
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, address) = match rest.rsplit_once('@') {
            Some((userinfo, address)) => (Some(userinfo), address),
            None => (None, rest),
        };
        if address.contains(['/', '?', '#']) {
            return Err(
                "a proxy URL has no path or query: `scheme://[user:password@]host:port`".into(),
            );
        }
        let credentials = userinfo.map(credentials).transpose()?;
        let (host, port) = host_and_port(address)?;
        Ok(Proxy {
            kind,
            host,
            port,
            credentials,
        })
    }

    /// `host:port`, for logs and errors.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn credentials(userinfo: &str) -> Result<Credentials, String> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = percent_decode(user).ok_or("the proxy user is not valid percent-encoded UTF-8")?;
    let password =
        percent_decode(password).ok_or("the proxy password is not valid percent-encoded UTF-8")?;
    if user.is_empty() {
        return Err("a proxy URL with `@` needs a user before it".into());
    }
    Ok(Credentials {
        user,
        password: password.into(),
    })
}

fn host_and_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if address.starts_with('[') {
        let end = address
            .find(']')
            .ok_or("an IPv6 proxy address lacks its `]`")?;
        let port = address[end + 1..].strip_prefix(':').unwrap_or("");
        (&address[..=end], port)
    } else {
        address.rsplit_once(':').unwrap_or((address, ""))
    };
    if host.is_empty() || host == "[]" {
        return Err("a proxy URL needs a host".into());
    }
    if port.is_empty() {
        return Err("a proxy URL needs a port: `scheme://host:port`".into());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("the proxy port is not a number from 1 to 65535")?;
    Ok((host.to_ascii_lowercase(), port))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for Proxy {
    /// The URL with its password masked: `http://user:***@host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        if let Some(credentials) = &self.credentials {
            let masked = if credentials.password.expose_secret().is_empty() {
                ""
            } else {
                ":***"
            };
            write!(f, "{}{masked}@", credentials.user)?;
        }
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
