//! The mock over TLS, as Google's front end serves Gemini: a certificate for
//! `127.0.0.1` and `localhost` signed by a CA the mock makes at start, whose
//! certificate it hands out as PEM for the client to trust.
//!
//! `HttpServer` always offers both `h2` and `http/1.1` by ALPN (actix-http puts
//! them in front of any list it is given, and rustls picks the server's first
//! choice the client offers), so a mock that must speak one protocol only is
//! built from actix-http's protocol-specific services instead: a test can then
//! force HTTP/1.1 on a client that offers `h2`, or refuse a client that offers
//! `http/1.1` only.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use actix_http::HttpService;
use actix_server::Server;
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt as _};
use actix_web::dev::AppConfig;
use actix_web::web;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::state::Shared;

/// The protocols a TLS mock offers by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` and `http/1.1`, as Google's front end: a client offering `h2` gets HTTP/2.
    Both,
    /// `h2` only: a client that does not offer it fails the handshake.
    H2,
    /// `http/1.1` only, whatever else the client offers.
    Http1,
}

/// A CA and the server certificate it signed, made for one mock.
pub(crate) struct MockCertificates {
    /// The CA's certificate, for clients to trust.
    pub ca_pem: String,
    server_config: rustls::ServerConfig,
}

fn tls_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("mock TLS set-up: {error}"))
}

impl MockCertificates {
    pub(crate) fn generate(alpn: Alpn) -> io::Result<MockCertificates> {
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gemini-mock test CA");
        let ca_key = rcgen::KeyPair::generate().map_err(tls_error)?;
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(tls_error)?;

        let key = rcgen::KeyPair::generate().map_err(tls_error)?;
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .map_err(tls_error)?;
        let cert = params.signed_by(&key, &ca).map_err(tls_error)?;

        let chain = vec![cert.der().clone(), CertificateDer::from(ca.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
        // The protocol services put their own protocol in front of this list.
        server_config.alpn_protocols = match alpn {
            Alpn::Both | Alpn::H2 => Vec::new(),
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
        };
        Ok(MockCertificates {
            ca_pem: ca.pem(),
            server_config,
        })
    }
}

/// Serves the mock's app with TLS on `listener`, offering `alpn`, with the
/// same knobs as the cleartext server (`MockGemini::start_on`).
pub(crate) fn serve(
    listener: TcpListener,
    workers: usize,
    alpn: Alpn,
    certificates: &MockCertificates,
    data: web::Data<Shared>,
) -> io::Result<actix_server::Server> {
    let config = certificates.server_config.clone();
    let name = "mock-gemini-tls";
    let builder = Server::build()
        .workers(workers.max(1))
        .disable_signals()
        .shutdown_timeout(1);
    let service = move || {
        map_config(
            IntoServiceFactory::into_factory(crate::app(data.clone()))
                .map_err(|error: actix_web::Error| error.error_response()),
            |_| AppConfig::default(),
        )
    };
    // The services differ in type per protocol, hence one `listen` each.
    let builder = match alpn {
        Alpn::Both => builder.listen(name, listener, move || {
            HttpService::build()
                .h1_allow_half_closed(false)
                .finish(service())
                .rustls_0_23(config.clone())
        }),
        Alpn::H2 => builder.listen(name, listener, move || {
            HttpService::build()
                .h2(service())
                .rustls_0_23(config.clone())
        }),
        Alpn::Http1 => builder.listen(name, listener, move || {
            HttpService::build()
                .h1_allow_half_closed(false)
                .h1(service())
                .rustls_0_23(config.clone())
        }),
    }?;
    Ok(builder.run())
}
