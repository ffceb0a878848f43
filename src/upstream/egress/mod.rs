//! Egress proxies (docs/upstream.md#egress-proxies): every call to Gemini,
//! the Live API's WebSockets included, can leave through an HTTP `CONNECT`
//! proxy or a SOCKS5 proxy, for networks that reach Google only that way.
//!
//! awc has no proxy support of its own, so the tunnel is its TCP connector
//! ([`ProxyConnector`]) and TLS runs over it unchanged. With several proxies,
//! each key always leaves through the same one (Google also limits by source
//! address): an upstream actor builds one client per proxy and the pipeline
//! picks the client by the key it is about to send.

mod connect;
mod http_connect;
mod no_proxy;
mod proxy;
mod service;
mod socks;

pub use connect::connect;
pub use no_proxy::exempts;
pub use proxy::{Credentials, Kind, Proxy};
pub use service::ProxyConnector;

use sha2::{Digest, Sha256};

/// The way out to Gemini: no proxy, or the proxies keys are spread over.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    proxies: Vec<Proxy>,
}

impl Egress {
    /// Straight to Gemini.
    pub fn direct() -> Egress {
        Egress::default()
    }

    pub fn through(proxies: Vec<Proxy>) -> Egress {
        Egress { proxies }
    }

    pub fn proxies(&self) -> &[Proxy] {
        &self.proxies
    }

    /// How many ways out there are: one client is built for each.
    pub fn routes(&self) -> usize {
        self.proxies.len().max(1)
    }

    /// The proxy of route `route`; `None` when calls go straight to Gemini.
    pub fn proxy(&self, route: usize) -> Option<&Proxy> {
        self.proxies.get(route)
    }

    /// Server key `index` (its place in `GEMINI_API_KEY`) always leaves through
    /// proxy `index mod n`.
    pub fn route_of_server_key(&self, index: usize) -> usize {
        index % self.routes()
    }

    /// A client's own key leaves through a proxy chosen by a hash of the key,
    /// so the same key always takes the same way out.
    pub fn route_of_client_key(&self, key: &[u8]) -> usize {
        if self.routes() == 1 {
            return 0;
        }
        let digest = Sha256::digest(key);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % self.routes() as u64) as usize
    }

    /// For the start-up log: the proxies, passwords masked.
    pub fn describe(&self) -> String {
        if self.proxies.is_empty() {
            return "none".into();
        }
        self.proxies
            .iter()
            .map(Proxy::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests;

/// One awc client per way out (at least one), indexed by route; built on the
/// thread that uses them, since awc clients are `!Send`.
#[derive(Clone)]
pub struct Clients<T = awc::Client>(std::rc::Rc<[T]>);

impl<T> Clients<T> {
    pub fn build(egress: &Egress, build: impl Fn(Option<&Proxy>) -> T) -> Clients<T> {
        Clients(
            (0..egress.routes())
                .map(|r| build(egress.proxy(r)))
                .collect(),
        )
    }

    /// The client of `route` (from [`Egress::route_of_server_key`] or
    /// [`Egress::route_of_client_key`]).
    pub fn route(&self, route: usize) -> &T {
        // Never empty: `Egress::routes` is at least 1.
        &self.0[route % self.0.len()]
    }
}
