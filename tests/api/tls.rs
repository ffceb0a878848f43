//! The public listener with TLS (`TLS_CERT_FILE`, `TLS_KEY_FILE`): what each
//! kind of client negotiates (ALPN `h2`, `http/1.1`, none), that plain HTTP is
//! refused, that a reload swaps the certificate and a bad file keeps the old
//! one, start-up refusals, and the `healthcheck` command over TLS. The
//! certificates are made here, with a CA of the test's own.

use crate::helpers::*;
use awc::http::{Method, Version};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------- certificates

/// A CA of the test's own and a directory for the PEM files it issues.
pub(crate) struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

/// One server certificate issued by the test CA, and its key.
pub(crate) struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    pub(crate) fn new(test: &str) -> Pki {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gemini-proxy-tls-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gemini-proxy test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(
            params,
            rcgen::KeyPair::generate().expect("CA key"),
        )
        .expect("CA certificate");
        Pki { ca, dir }
    }

    /// A server certificate for `127.0.0.1` and `localhost`, signed by the CA.
    pub(crate) fn issue(&self) -> Issued {
        let key = rcgen::KeyPair::generate().expect("server key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("server certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes the CA's certificate as `ca.pem`, for clients to trust.
    pub(crate) fn write_ca(&self) -> PathBuf {
        self.write("ca.pem", &self.ca.pem())
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    }

    /// Writes `issued` as `cert.pem` (with the CA after it, as a chain) and
    /// `key.pem`.
    pub(crate) fn install(&self, issued: &Issued) {
        self.write("cert.pem", &format!("{}{}", issued.cert_pem, self.ca.pem()));
        self.write("key.pem", &issued.key_pem);
    }

    /// The settings that turn TLS on with `cert.pem` and `key.pem`.
    pub(crate) fn settings(&self) -> [(String, String); 2] {
        [
            (
                "TLS_CERT_FILE".into(),
                self.path("cert.pem").display().to_string(),
            ),
            (
                "TLS_KEY_FILE".into(),
                self.path("key.pem").display().to_string(),
            ),
        ]
    }

    /// A client configuration that trusts the test CA and offers `alpn`.
    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("CA as a root");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the service with TLS on the files `pki` holds.
async fn spawn_tls_app(pki: &Pki) -> TestApp {
    let tls = pki.settings();
    spawn_app_with(move |settings| settings.extend(tls)).await
}

// ---------------------------------------------------------------- clients

type TlsConnection = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS handshake with the service on `port`, checked against the test CA.
async fn handshake(port: u16, config: Arc<rustls::ClientConfig>) -> TlsConnection {
    let tcp = connect(port).await;
    let name = ServerName::try_from("127.0.0.1").expect("a server name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

fn negotiated(connection: &TlsConnection) -> Option<Vec<u8>> {
    connection.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// The certificate the service presented.
fn presented(connection: &TlsConnection) -> CertificateDer<'static> {
    connection
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a server certificate")
        .clone()
        .into_owned()
}

/// The certificate a new handshake gets.
async fn certificate_now(pki: &Pki, port: u16) -> CertificateDer<'static> {
    presented(&handshake(port, pki.client_config(&[b"h2", b"http/1.1"])).await)
}

/// `GET /health` written by hand as HTTP/1.1; answers the status line.
async fn http1_health(connection: &mut TlsConnection) -> String {
    connection
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write request");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), connection.read_to_end(&mut answer))
        .await
        .expect("an answer in time");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An awc client over TLS with `config` (its ALPN decides the HTTP version).
fn https_client(config: Arc<rustls::ClientConfig>) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(config))
        .timeout(Duration::from_secs(30))
        .disable_redirects()
        .finish()
}

/// A whole answer from the service over HTTPS, with the HTTP version it came in.
async fn https_request(
    client: &awc::Client,
    port: u16,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (Version, TestResponse) {
    let mut request = client.request(method, format!("https://127.0.0.1:{port}{path}"));
    for (name, value) in headers {
        request = request.append_header((*name, *value));
    }
    let mut response = request
        .send_body(body)
        .await
        .unwrap_or_else(|e| panic!("HTTPS request to {path} failed: {e}"));
    let body = response
        .body()
        .limit(1024 * 1024)
        .await
        .expect("the body reads");
    (
        response.version(),
        TestResponse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body,
        },
    )
}

// ---------------------------------------------------------------- protocols

#[actix_rt::test]
async fn a_client_offering_h2_gets_http2_and_health_answers_200() {
    let pki = Pki::new("h2");
    pki.install(&pki.issue());
    let app = spawn_tls_app(&pki).await;

    let connection = handshake(app.port, pki.client_config(&[b"h2", b"http/1.1"])).await;
    assert_eq!(negotiated(&connection).as_deref(), Some(&b"h2"[..]));

    let client = https_client(pki.client_config(&[b"h2", b"http/1.1"]));
    let (version, health) = https_request(
        &client,
        app.port,
        Method::GET,
        "/health",
        &[],
        String::new(),
    )
    .await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(health.status, 200, "{}", health.text());
}

#[actix_rt::test]
async fn a_client_offering_only_http1_gets_http1() {
    let pki = Pki::new("http1");
    pki.install(&pki.issue());
    let app = spawn_tls_app(&pki).await;

    let mut connection = handshake(app.port, pki.client_config(&[b"http/1.1"])).await;
    assert_eq!(negotiated(&connection).as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(http1_health(&mut connection).await, "HTTP/1.1 200 OK");

    let client = https_client(pki.client_config(&[b"http/1.1"]));
    let (version, health) = https_request(
        &client,
        app.port,
        Method::GET,
        "/health",
        &[],
        String::new(),
    )
    .await;
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(health.status, 200);
}

/// python's websockets library (the Live API's client) offers no ALPN.
#[actix_rt::test]
async fn a_client_offering_no_alpn_gets_http1() {
    let pki = Pki::new("no-alpn");
    pki.install(&pki.issue());
    let app = spawn_tls_app(&pki).await;

    let mut connection = handshake(app.port, pki.client_config(&[])).await;
    assert_eq!(negotiated(&connection), None);
    assert_eq!(http1_health(&mut connection).await, "HTTP/1.1 200 OK");
}

#[actix_rt::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let pki = Pki::new("plain");
    pki.install(&pki.issue());
    let app = spawn_tls_app(&pki).await;

    let mut stream = connect(app.port).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the service closes the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&answer)
    );

    let refused = client()
        .get(format!("http://127.0.0.1:{}/health", app.port))
        .send()
        .await;
    assert!(refused.is_err(), "a plain-HTTP client got an answer");
}

#[actix_rt::test]
async fn the_proxy_answers_over_tls() {
    let pki = Pki::new("proxy");
    pki.install(&pki.issue());
    let app = spawn_tls_app(&pki).await;
    let client = https_client(pki.client_config(&[b"h2", b"http/1.1"]));

    let (version, response) = https_request(
        &client,
        app.port,
        Method::POST,
        "/gemini-proxy",
        &[
            ("X-API-KEY", CLIENT_KEY),
            ("Content-Type", "application/json"),
        ],
        json!({"prompt": "What is the capital of France?"}).to_string(),
    )
    .await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["result"], "OK", "{body}");
    assert_eq!(
        body["data"]["response"],
        "echo: What is the capital of France?"
    );
    assert_eq!(app.upstream_requests().len(), 1);
}

// ---------------------------------------------------------------- reload

const RELOAD_SUCCESS: &str = r#"gemini_proxy_config_reloads_total{result="success"}"#;
const RELOAD_FAILURE: &str = r#"gemini_proxy_config_reloads_total{result="failure"}"#;

#[actix_rt::test]
async fn a_reload_presents_the_new_certificate_and_a_bad_file_keeps_the_old_one() {
    let pki = Pki::new("reload");
    let first = pki.issue();
    pki.install(&first);
    let app = spawn_tls_app(&pki).await;
    assert_eq!(certificate_now(&pki, app.port).await, first.der);
    // A connection made before the reload, kept open across it.
    let mut before = handshake(app.port, pki.client_config(&[b"http/1.1"])).await;

    let second = pki.issue();
    pki.install(&second);
    app.control.reload().await.expect("the keys reload");
    assert_eq!(certificate_now(&pki, app.port).await, second.der);
    assert_eq!(http1_health(&mut before).await, "HTTP/1.1 200 OK");

    // A certificate file that holds no certificate: refused, the second stays.
    pki.write("cert.pem", &second.key_pem);
    app.control.reload().await.expect("the keys still reload");
    assert_eq!(certificate_now(&pki, app.port).await, second.der);
    // A new certificate whose key was not replaced with it.
    pki.write("cert.pem", &pki.issue().cert_pem);
    app.control.reload().await.expect("the keys still reload");
    assert_eq!(certificate_now(&pki, app.port).await, second.der);

    let client = https_client(pki.client_config(&[b"h2"]));
    let (_, metrics) = https_request(
        &client,
        app.port,
        Method::GET,
        "/metrics",
        &[],
        String::new(),
    )
    .await;
    let metrics = metrics.text();
    // The file watch may reload too, and count again; never less.
    let count = |series| metric_value(&metrics, series).unwrap_or(0.0);
    assert!(count(RELOAD_SUCCESS) >= 1.0, "{metrics}");
    assert!(count(RELOAD_FAILURE) >= 2.0, "{metrics}");
}

#[actix_rt::test]
async fn new_certificate_files_are_picked_up_without_a_signal() {
    let pki = Pki::new("watch");
    pki.install(&pki.issue());
    let app = spawn_tls_app(&pki).await;

    let renewed = pki.issue();
    // As a renewal tool does it: new files beside, then renamed over the old.
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let new_cert = pki.write(
        "cert.pem.new",
        &format!("{}{}", renewed.cert_pem, pki.ca.pem()),
    );
    let new_key = pki.write("key.pem.new", &renewed.key_pem);
    std::fs::rename(new_key, key).expect("rename key");
    std::fs::rename(new_cert, cert).expect("rename certificate");

    let started = Instant::now();
    while certificate_now(&pki, app.port).await != renewed.der {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the renewed certificate was not picked up within 5 s"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- the binary

/// Runs the binary with `extra` on top of the offline environment and expects
/// a refusal that says `says`; answers its standard error.
fn refused_start(extra: &[(&str, &Path)], says: &str) -> String {
    let mut env = offline_env();
    for (name, path) in extra {
        env.insert((*name).into(), path.display().to_string());
    }
    let run = run_binary_in(Path::new(env!("CARGO_TARGET_TMPDIR")), &[], &env, "");
    assert!(!run.status.success(), "it started: {}", run.stderr);
    assert!(run.stderr.contains(says), "{}", run.stderr);
    assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
    run.stderr
}

#[test]
fn start_up_refuses_incomplete_or_unusable_tls_settings() {
    let pki = Pki::new("refusals");
    let issued = pki.issue();
    pki.install(&issued);
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let other_key = pki.write("other-key.pem", &pki.issue().key_pem);
    let missing = pki.path("missing.pem");

    let alone = refused_start(&[("TLS_CERT_FILE", &cert)], "invalid setting TLS_KEY_FILE");
    assert!(alone.contains("TLS_CERT_FILE"), "{alone}");
    let alone = refused_start(&[("TLS_KEY_FILE", &key)], "invalid setting TLS_CERT_FILE");
    assert!(alone.contains("TLS_KEY_FILE"), "{alone}");

    let cases: [(&[(&str, &Path)], &str); 4] = [
        (
            &[("TLS_CERT_FILE", &missing), ("TLS_KEY_FILE", &key)],
            "invalid setting TLS_CERT_FILE",
        ),
        (
            &[("TLS_CERT_FILE", &key), ("TLS_KEY_FILE", &key)],
            "holds no PEM certificate",
        ),
        (
            &[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &cert)],
            "holds no PEM private key",
        ),
        (
            &[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &other_key)],
            "does not match the certificate",
        ),
    ];
    for (extra, says) in cases {
        let stderr = refused_start(extra, says);
        for line in issued.key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!stderr.contains(line), "the key file was quoted: {stderr}");
        }
    }
    let stderr = refused_start(
        &[("TLS_CERT_FILE", &missing), ("TLS_KEY_FILE", &key)],
        "cannot be read",
    );
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

/// The healthcheck command with exactly `env` (plus `PORT`).
fn healthcheck(port: &str, env: &[(String, String)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gemini-proxy"))
        .arg("healthcheck")
        .env_clear()
        .env("PORT", port)
        .envs(env.iter().cloned())
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("healthcheck runs")
}

#[actix_rt::test]
async fn the_healthcheck_command_speaks_tls_and_sighup_brings_a_renewed_certificate() {
    let pki = Pki::new("binary");
    pki.install(&pki.issue());
    let mock = gemini_mock::MockGemini::start(gemini_mock::MockConfig::default())
        .await
        .expect("mock starts");
    let mut env: HashMap<String, String> = binary_env(&mock);
    env.extend(pki.settings());
    let app = BinaryApp::start(&[], &env);
    assert!(app.address.starts_with("https://"), "{}", app.address);
    let port = app.address.rsplit(':').next().expect("port").to_owned();

    let healthy = healthcheck(&port, &pki.settings());
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    // Without the settings it speaks plain HTTP, which the TLS port refuses.
    let plain = healthcheck(&port, &[]);
    assert!(!plain.status.success());

    let renewed = pki.issue();
    pki.install(&renewed);
    app.signal("HUP");
    let port: u16 = port.parse().expect("a port");
    let started = Instant::now();
    while certificate_now(&pki, port).await != renewed.der {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "SIGHUP did not bring the new certificate:\n{}",
            app.logs()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGHUP or the file watch, whichever saw the files first. The log is
    // read by a thread of its own, which may lag the new certificate.
    let started = Instant::now();
    while !app.logs().contains("TLS certificate reloaded (") {
        assert!(started.elapsed() < Duration::from_secs(5), "{}", app.logs());
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
