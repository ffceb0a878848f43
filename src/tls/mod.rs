//! TLS on the public listener (`TLS_CERT_FILE`, `TLS_KEY_FILE`), for clients
//! that insist on it when no TLS-terminating load balancer stands in front:
//! the python SDK's Live API always dials `wss://`.
//!
//! The certificate sits in a resolver rather than in the rustls configuration,
//! so a reload (with the keys file: `SIGHUP`, or a change on disk) swaps it for
//! new handshakes without restarting the listener; connections already open
//! keep the certificate they were made with. A file that fails to load leaves
//! the certificate in force as it was.
//!
//! `roots` reads the other PEM file the service takes, `UPSTREAM_CA_FILE`, the
//! same way and with the same kind of error.

pub mod probe;
pub mod roots;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The setting that names the certificate chain.
pub const CERT_VARIABLE: &str = "TLS_CERT_FILE";
/// The setting that names the private key.
pub const KEY_VARIABLE: &str = "TLS_KEY_FILE";

/// The two PEM files, as the settings name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate first, then the chain up to (not including) the root.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the certificate or key could not be used. The message names the
/// setting and the file, never anything read from the key file.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {file}: {problem}")]
pub struct TlsFileError {
    pub variable: &'static str,
    /// The path, as the setting gave it.
    pub file: String,
    pub problem: String,
}

impl TlsFileError {
    fn new(variable: &'static str, file: &std::path::Path, problem: impl Into<String>) -> Self {
        TlsFileError {
            variable,
            file: file.display().to_string(),
            problem: problem.into(),
        }
    }

    /// The message without the variable's name, for a settings error that
    /// names the variable itself.
    pub fn problem_in_file(&self) -> String {
        format!("{}: {}", self.file, self.problem)
    }
}

/// ring, the one provider in the dependency graph (a second one makes rustls
/// panic), given explicitly so nothing here depends on the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks both files: a certificate chain, a private key rustls can
/// sign with, and the two belonging together.
pub fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsFileError> {
    let cert_error = |problem: String| TlsFileError::new(CERT_VARIABLE, &files.cert, problem);
    let key_error = |problem: String| TlsFileError::new(KEY_VARIABLE, &files.key, problem);
    let read =
        |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("cannot be read ({e})"));

    let cert_pem = read(&files.cert).map_err(cert_error)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(pem_problem(&e)))?;
    if chain.is_empty() {
        return Err(cert_error(
            "holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)".into(),
        ));
    }

    let key_pem = read(&files.key).map_err(key_error)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(key_error(
                "holds no PEM private key (`BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)"
                    .into(),
            ))
        }
        Err(e) => return Err(key_error(pem_problem(&e))),
    };
    // rustls' own error text is not repeated: it is generic, and a message
    // about the key file must never risk quoting it.
    let signing_key = provider().key_provider.load_private_key(key).map_err(|_| {
        key_error("the private key is not one rustls can use (RSA of 2048 bits or more, ECDSA P-256 or P-384, or Ed25519)".into())
    })?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public half; nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(key_error(format!(
                "does not match the certificate in {CERT_VARIABLE} ({}); the server's own certificate comes first in that file, then its chain",
                files.cert.display()
            )))
        }
        Err(_) => {
            return Err(cert_error(
                "its first certificate is not a valid X.509 certificate".into(),
            ))
        }
    }
    Ok(Arc::new(certified))
}

/// What is wrong with a PEM file, in words that quote nothing from it.
fn pem_problem(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no `-----END` line",
        pem::Error::IllegalSectionStart { .. } => "a `-----BEGIN` line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "is not a PEM file",
    }
    .to_owned()
}

/// Hands every new handshake the certificate in force, which a reload swaps.
///
/// A `RwLock` rather than arc-swap: one uncontended read lock per handshake
/// costs nanoseconds beside the handshake's own cryptography, and needs no
/// extra crate.
#[derive(Debug)]
pub struct CertResolver {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    /// Loads the files; an error names the setting at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<CertResolver>, TlsFileError> {
        let current = RwLock::new(load(&files)?);
        Ok(Arc::new(CertResolver { files, current }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again and puts their certificate in force; on error the
    /// one in force stays. Answers whether the certificate changed.
    pub fn reload(&self) -> Result<bool, TlsFileError> {
        let fresh = load(&self.files)?;
        let mut current = match self.current.write() {
            Ok(current) => current,
            // The lock guards one `Arc`, replaced in one assignment: a panic
            // elsewhere cannot have left it half-written.
            Err(poisoned) => poisoned.into_inner(),
        };
        let changed = current.cert != fresh.cert;
        *current = fresh;
        Ok(changed)
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate whatever the SNI: clients reach the service by
        // names the operator's certificate covers, or by IP with no SNI.
        Some(self.current())
    }
}

/// The listener's rustls configuration: TLS 1.2 and 1.3, no client
/// certificates, the certificate from `resolver`.
///
/// ALPN is left empty here because actix-http puts `h2` then `http/1.1` in
/// front of whatever it lists (`HttpService::rustls_0_23_with_config`), and a
/// client that offers neither, or no ALPN at all, gets HTTP/1.1.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, rustls::Error> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver))
}

#[cfg(test)]
pub(crate) mod tests;
