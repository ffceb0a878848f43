//! The proxy tunnel as awc's TCP connector: awc asks it for a stream to
//! Gemini's host and port, and runs TLS, HTTP and WebSockets over what it
//! returns, so pooling, timeouts and ALPN stay awc's as for a direct connection.

use super::connect::connect;
use super::proxy::Proxy;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::TcpStream;

/// An `actix_service::Service` for `awc::Connector::connector`.
#[derive(Clone)]
pub struct ProxyConnector {
    proxy: Rc<Proxy>,
    timeout: Duration,
}

impl ProxyConnector {
    pub fn new(proxy: Proxy, timeout: Duration) -> ProxyConnector {
        ProxyConnector {
            proxy: Rc::new(proxy),
            timeout,
        }
    }
}

impl actix_service::Service<ConnectInfo<Uri>> for ProxyConnector {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, request: ConnectInfo<Uri>) -> Self::Future {
        let proxy = self.proxy.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let host = request.hostname().to_owned();
            match connect(&proxy, &host, request.port(), timeout).await {
                Ok(stream) => Ok(Connection::new(request.request().clone(), stream)),
                Err(error) => {
                    // awc shows the client no more than "could not connect":
                    // the operator learns here what the proxy did.
                    log::warn!("upstream connection through an egress proxy failed: {error}");
                    Err(ConnectError::Io(error))
                }
            }
        })
    }
}
