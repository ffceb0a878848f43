//! `UPSTREAM_CA_FILE`: root certificates the upstream clients trust besides
//! the built-in (webpki) ones, for a TLS-inspecting corporate egress or a
//! local TLS test upstream. Read and checked once, with the settings, so a bad
//! file stops start-up rather than the first call to Gemini.

use super::{pem_problem, TlsFileError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor};
use std::path::{Path, PathBuf};

/// The setting that names the file.
pub const CA_VARIABLE: &str = "UPSTREAM_CA_FILE";

/// The extra roots, and the file they came from (for the start-up log).
#[derive(Clone, Debug)]
pub struct ExtraRoots {
    pub file: PathBuf,
    pub roots: Vec<TrustAnchor<'static>>,
}

/// Reads every certificate of the PEM file as a trust anchor. Other PEM
/// blocks (a key left in a bundle) are skipped; a file with no certificate,
/// or one rustls cannot use as a root, is refused. The message names the
/// setting and the file, and quotes nothing read from it.
pub fn load(file: &Path) -> Result<ExtraRoots, TlsFileError> {
    let error = |problem: String| TlsFileError::new(CA_VARIABLE, file, problem);
    let pem = std::fs::read(file).map_err(|e| error(format!("cannot be read ({e})")))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(pem_problem(&e)))?;
    if certificates.is_empty() {
        return Err(error(
            "holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)".into(),
        ));
    }
    let count = certificates.len();
    let mut store = rustls::RootCertStore::empty();
    for (index, certificate) in certificates.into_iter().enumerate() {
        // rustls' own error text is generic; the position says which block to look at.
        store.add(certificate).map_err(|_| {
            error(format!(
                "certificate {} of {count} is not a valid X.509 certificate rustls can trust as a root",
                index + 1
            ))
        })?;
    }
    Ok(ExtraRoots {
        file: file.to_path_buf(),
        roots: store.roots,
    })
}
