//! The TLS client of `gemini-proxy healthcheck`, which asks `/health` on the
//! service's own port and so must speak TLS when the service does.
//!
//! It accepts whatever certificate the service presents. The probe dials the
//! service's own address on this host (loopback, or the address the service
//! is bound to, which the kernel delivers locally), sends no credential and
//! learns nothing but a status line, so there is nothing for an impostor to
//! steal or forge that a process able to take over a local port could not
//! get anyway. Verifying would also fail for the wrong reasons: the
//! certificate names the host clients use (`gemini.example.com`), not
//! `127.0.0.1`, and an expired certificate is no reason for a supervisor to
//! restart a service that serves.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;

/// Starts TLS over `tcp`, a connection to the service's own `address`,
/// offering HTTP/1.1 only (the probe writes an HTTP/1.1 request by hand).
pub fn connect(
    tcp: TcpStream,
    address: IpAddr,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let config = client_config(vec![b"http/1.1".to_vec()]).map_err(std::io::Error::other)?;
    let connection = ClientConnection::new(config, ServerName::IpAddress(address.into()))
        .map_err(std::io::Error::other)?;
    Ok(StreamOwned::new(connection, tcp))
}

/// A client configuration that offers `alpn` and accepts the service's own
/// certificate, whatever it is.
pub(crate) fn client_config(alpn: Vec<Vec<u8>>) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = super::provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(OwnService(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// Takes any certificate (see the module's doc for why), but still checks the
/// handshake's signatures, so the connection is a well-formed TLS session.
#[derive(Debug)]
struct OwnService(Arc<CryptoProvider>);

impl ServerCertVerifier for OwnService {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
