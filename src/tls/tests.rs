//! Unit tests of `tls`: what loads, what is refused and how it is named, and
//! the resolver's swap. Certificates are made on the spot with rcgen.

use super::*;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory of PEM files for one test, removed when dropped.
pub(crate) struct PemDir {
    pub dir: PathBuf,
}

impl PemDir {
    pub(crate) fn new(test: &str) -> PemDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gemini-proxy-tls-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        PemDir { dir }
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A fresh self-signed certificate for `localhost` and its key, as
    /// `cert.pem` and `key.pem`.
    pub(crate) fn self_signed(&self) -> (TlsFiles, Issued) {
        let issued = Issued::new();
        let files = TlsFiles {
            cert: self.write("cert.pem", &issued.cert_pem),
            key: self.write("key.pem", &issued.key_pem),
        };
        (files, issued)
    }
}

impl Drop for PemDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed certificate and its key, as PEM.
pub(crate) struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl Issued {
    pub(crate) fn new() -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }
}

fn refusal(files: &TlsFiles) -> TlsFileError {
    load(files).expect_err("should be refused")
}

/// The base64 lines of a PEM text, which are the key material.
fn material(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect()
}

#[test]
fn loads_a_certificate_and_the_key_that_belongs_to_it() {
    let dir = PemDir::new("loads");
    let (files, issued) = dir.self_signed();
    let key = load(&files).unwrap();
    assert_eq!(key.cert.len(), 1);
    assert_eq!(key.cert[0].as_ref(), issued.cert_der.as_slice());
}

#[test]
fn a_file_that_cannot_be_read_is_named_with_its_setting() {
    let dir = PemDir::new("missing");
    let (files, _) = dir.self_signed();
    let missing = dir.dir.join("nowhere.pem");
    for (files, variable) in [
        (
            TlsFiles {
                cert: missing.clone(),
                key: files.key.clone(),
            },
            CERT_VARIABLE,
        ),
        (
            TlsFiles {
                cert: files.cert.clone(),
                key: missing.clone(),
            },
            KEY_VARIABLE,
        ),
    ] {
        let error = refusal(&files);
        assert_eq!(error.variable, variable, "{error}");
        assert!(error.problem.contains("cannot be read"), "{error}");
        assert_eq!(error.file, missing.display().to_string());
    }
}

#[test]
fn each_kind_of_bad_file_is_refused_with_a_message_naming_its_setting() {
    let dir = PemDir::new("bad");
    let (files, issued) = dir.self_signed();
    let other = Issued::new();
    let cases: Vec<(&str, TlsFiles, &str, &str)> = vec![
        (
            "the key file given as the certificate",
            TlsFiles {
                cert: files.key.clone(),
                key: files.key.clone(),
            },
            CERT_VARIABLE,
            "no PEM certificate",
        ),
        (
            "an empty certificate file",
            TlsFiles {
                cert: dir.write("empty.pem", ""),
                key: files.key.clone(),
            },
            CERT_VARIABLE,
            "no PEM certificate",
        ),
        (
            "the certificate given as the key",
            TlsFiles {
                cert: files.cert.clone(),
                key: files.cert.clone(),
            },
            KEY_VARIABLE,
            "no PEM private key",
        ),
        (
            "another certificate's key",
            TlsFiles {
                cert: files.cert.clone(),
                key: dir.write("other-key.pem", &other.key_pem),
            },
            KEY_VARIABLE,
            "does not match the certificate",
        ),
        (
            "a CERTIFICATE block that is not X.509",
            TlsFiles {
                cert: dir.write(
                    "junk.pem",
                    "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
                ),
                key: files.key.clone(),
            },
            CERT_VARIABLE,
            "not a valid X.509 certificate",
        ),
        (
            "a certificate block without its end",
            TlsFiles {
                cert: dir.write("cut.pem", issued.cert_pem.split("-----END").next().unwrap()),
                key: files.key.clone(),
            },
            CERT_VARIABLE,
            "no `-----END` line",
        ),
        (
            "a key block without its end",
            TlsFiles {
                cert: files.cert.clone(),
                key: dir.write(
                    "cut-key.pem",
                    issued.key_pem.split("-----END").next().unwrap(),
                ),
            },
            KEY_VARIABLE,
            "no `-----END` line",
        ),
        (
            "a PRIVATE KEY block that holds no key",
            TlsFiles {
                cert: files.cert.clone(),
                key: dir.write(
                    "junk-key.pem",
                    "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n",
                ),
            },
            KEY_VARIABLE,
            "not one rustls can use",
        ),
    ];
    for (description, files, variable, says) in cases {
        let error = refusal(&files);
        assert_eq!(error.variable, variable, "{description}: {error}");
        assert!(error.to_string().contains(says), "{description}: {error}");
        let text = error.to_string();
        for line in material(&issued.key_pem)
            .into_iter()
            .chain(material(&other.key_pem))
        {
            for window in line.as_bytes().windows(8) {
                let window = std::str::from_utf8(window).unwrap();
                assert!(
                    !text.contains(window),
                    "{description} quotes the key: {text}"
                );
            }
        }
    }
}

#[test]
fn a_chain_is_kept_whole_with_the_servers_certificate_first() {
    let dir = PemDir::new("chain");
    let (files, issued) = dir.self_signed();
    let extra = Issued::new();
    let chain = dir.write(
        "chain.pem",
        &format!("{}{}", issued.cert_pem, extra.cert_pem),
    );
    let key = load(&TlsFiles {
        cert: chain,
        key: files.key.clone(),
    })
    .unwrap();
    assert_eq!(key.cert.len(), 2);
    assert_eq!(key.cert[0].as_ref(), issued.cert_der.as_slice());
}

fn in_force(resolver: &CertResolver) -> Vec<u8> {
    resolver.current().cert[0].as_ref().to_vec()
}

fn replace(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_reload_puts_the_new_certificate_in_force_and_a_bad_one_changes_nothing() {
    let dir = PemDir::new("reload");
    let (files, first) = dir.self_signed();
    let resolver = CertResolver::load(files.clone()).unwrap();
    assert_eq!(in_force(&resolver), first.cert_der);
    assert!(!resolver.reload().unwrap(), "the same files: unchanged");

    let second = Issued::new();
    replace(&files.cert, &second.cert_pem);
    replace(&files.key, &second.key_pem);
    assert!(resolver.reload().unwrap());
    assert_eq!(in_force(&resolver), second.cert_der);

    // A new certificate whose key has not been written yet.
    let third = Issued::new();
    replace(&files.cert, &third.cert_pem);
    let error = resolver.reload().unwrap_err();
    assert_eq!(error.variable, KEY_VARIABLE);
    assert_eq!(in_force(&resolver), second.cert_der);
}

#[test]
fn the_server_configuration_builds_with_the_ring_provider() {
    let dir = PemDir::new("config");
    let (files, _) = dir.self_signed();
    let config = server_config(CertResolver::load(files).unwrap()).unwrap();
    // actix-http adds h2 and http/1.1 itself (see server_config).
    assert!(config.alpn_protocols.is_empty());
}

/// What `on_connect` sees for a connection that negotiated `alpn` (the
/// client offering `offered`).
async fn recorded_socket(offered: Vec<Vec<u8>>) -> (Option<Vec<u8>>, bool) {
    use crate::routes::stream::ClientSocket;
    let dir = PemDir::new("hook");
    let (files, _) = dir.self_signed();
    let mut config = server_config(CertResolver::load(files).unwrap()).unwrap();
    // As actix-http sets them.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let dial = async {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
        tokio_rustls::TlsConnector::from(probe::client_config(offered).unwrap())
            .connect(name, tcp)
            .await
            .unwrap()
    };
    let accept = async {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.unwrap()
    };
    let (_client, server) = tokio::join!(dial, accept);
    let alpn = server.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let connection = actix_tls::accept::rustls_0_23::TlsStream::from(server);
    let mut data = actix_web::dev::Extensions::new();
    ClientSocket::record(std::time::Duration::from_secs(30))(&connection, &mut data);
    (alpn, data.get::<ClientSocket>().is_some())
}

#[actix_rt::test]
async fn a_tls_connection_has_its_socket_recorded_for_the_stall_cut_unless_it_is_http2() {
    assert_eq!(recorded_socket(vec![]).await, (None, true));
    assert_eq!(
        recorded_socket(vec![b"http/1.1".to_vec()]).await,
        (Some(b"http/1.1".to_vec()), true)
    );
    // One stalled stream must not cut the others of its connection.
    assert_eq!(
        recorded_socket(vec![b"h2".to_vec(), b"http/1.1".to_vec()]).await,
        (Some(b"h2".to_vec()), false)
    );
}
