//! The pool against a local HTTP/2 server over TLS (the h2 crate's server,
//! with a CA made here): connections counted on the server's side. The pool
//! itself in `pool`, and what `exchange` sees of it (the adapter, the
//! pipeline) in `exchange`.

mod exchange;
mod pool;

use super::*;
use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// What the test server saw and the levers the tests pull.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    resets: AtomicUsize,
    /// Sends GOAWAY (graceful) on every open connection.
    goaway: Notify,
    /// Ends each connection after this many requests (0: never), like nginx
    /// after `keepalive_requests`, with h2's graceful GOAWAY: the requests
    /// that arrive before its last GOAWAY are still answered, those after it
    /// refused, and the connection closes once its streams are done.
    rotate_after: AtomicUsize,
    /// Refuses a stream (`REFUSED_STREAM`) while a connection already has this
    /// many in progress (0: never), below the limit its SETTINGS announce, as
    /// nginx does while it cleans up streams already answered.
    refuse_above: AtomicUsize,
    /// `/stream` sends its second chunk when told.
    step: Notify,
}

struct Server {
    addr: SocketAddr,
    ca: CertificateDer<'static>,
    seen: Arc<Seen>,
    /// `/slow` answers once this turns true.
    gate: watch::Sender<bool>,
}

impl Server {
    async fn start(alpn: &[&[u8]], max_streams: u32) -> Server {
        crate::upstream::client::install_crypto_provider();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let mut tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let (gate, gate_rx) = watch::channel(false);
        let server_seen = seen.clone();
        actix_rt::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let index = server_seen.accepted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, seen, gate) =
                    (acceptor.clone(), server_seen.clone(), gate_rx.clone());
                actix_rt::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                        return;
                    }
                    serve(tls, index, max_streams, seen, gate).await;
                });
            }
        });
        Server {
            addr,
            ca: ca.der().clone(),
            seen,
            gate,
        }
    }

    fn pool(&self) -> H2Pool {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        H2Pool::new(&tls, Duration::from_secs(5), None)
    }

    fn uri(&self, path: &str) -> Uri {
        format!("https://{}{path}", self.addr).parse().unwrap()
    }

    fn head(&self, path: &str) -> Head<'static> {
        Head {
            method: &Method::POST,
            uri: self.uri(path),
            headers: &[],
        }
    }

    fn accepted(&self) -> usize {
        self.seen.accepted.load(Ordering::SeqCst)
    }

    async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while !done(&self.seen) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("the server never saw {what}"));
    }
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    index: usize,
    max_streams: u32,
    seen: Arc<Seen>,
    gate: watch::Receiver<bool>,
) {
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(max_streams)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    let mut going_away = false;
    let mut taken = 0;
    let in_progress = Rc::new(Cell::new(0usize));
    loop {
        let accepted = tokio::select! {
            accepted = conn.accept() => accepted,
            _ = seen.goaway.notified(), if !going_away => {
                going_away = true;
                conn.graceful_shutdown();
                continue;
            }
        };
        let Some(Ok((request, mut respond))) = accepted else {
            return;
        };
        let refuse_above = seen.refuse_above.load(Ordering::SeqCst);
        if refuse_above > 0 && in_progress.get() >= refuse_above {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        taken += 1;
        if !going_away && taken == seen.rotate_after.load(Ordering::SeqCst) {
            going_away = true;
            conn.graceful_shutdown();
        }
        in_progress.set(in_progress.get() + 1);
        let (seen, gate, in_progress) = (seen.clone(), gate.clone(), in_progress.clone());
        actix_rt::spawn(async move {
            answer(request, respond, index, seen, gate).await;
            in_progress.set(in_progress.get() - 1);
        });
    }
}

/// A stream's last event, as Gemini ends one.
const LAST_EVENT: &str = "data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n";

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    index: usize,
    seen: Arc<Seen>,
    mut gate: watch::Receiver<bool>,
) {
    seen.in_flight.fetch_add(1, Ordering::SeqCst);
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let path = request.uri().path().to_owned();
    let sent_headers = ["x-goog-api-key", "content-type", "user-agent"]
        .map(|name| {
            request
                .headers()
                .get(name)
                .map_or("-", |v| v.to_str().unwrap())
                .to_owned()
        })
        .join("|");
    let mut body = request.into_body();
    let mut received = BytesMut::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    let head = http::Response::builder()
        .status(200)
        .header("x-connection", index.to_string())
        .body(())
        .unwrap();
    match path.as_str() {
        "/slow" => {
            let _ = gate.wait_for(|open| *open).await;
            if let Ok(mut send) = respond.send_response(head, false) {
                let _ = send.send_data(received.freeze(), true);
            }
        }
        "/stream" => {
            if let Ok(mut send) = respond.send_response(head, false) {
                let _ = send.send_data(Bytes::from_static(b"first"), false);
                seen.step.notified().await;
                let _ = send.send_data(Bytes::from_static(b"second"), true);
            }
        }
        "/headers" => {
            if let Ok(mut send) = respond.send_response(head, false) {
                let _ = send.send_data(Bytes::from(sent_headers), true);
            }
        }
        "/sse" => {
            if let Ok(mut send) = respond.send_response(head, false) {
                let _ = send.send_data(Bytes::from_static(b"data: {\"n\":1}\n\n"), false);
                tokio::select! {
                    _ = seen.step.notified() => {
                        let _ = send.send_data(Bytes::from_static(LAST_EVENT.as_bytes()), true);
                    }
                    reset = futures_util::future::poll_fn(|cx| send.poll_reset(cx)) => {
                        if reset.is_ok() {
                            seen.resets.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        }
        "/busy" => {
            let head = http::Response::builder()
                .status(503)
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            if let Ok(mut send) = respond.send_response(head, false) {
                let busy = r#"{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}"#;
                let _ = send.send_data(Bytes::from_static(busy.as_bytes()), true);
            }
        }
        "/hang" => {
            let reset = futures_util::future::poll_fn(|cx| respond.poll_reset(cx)).await;
            if reset.is_ok() {
                seen.resets.fetch_add(1, Ordering::SeqCst);
            }
        }
        _ => {
            if let Ok(mut send) = respond.send_response(head, false) {
                let _ = send.send_data(received.freeze(), true);
            }
        }
    }
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
}

fn connection_of(response: &H2Response) -> String {
    response.headers()["x-connection"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn awc_client() -> awc::Client {
    crate::upstream::client::build(
        &crate::upstream::client::UpstreamConnect::new(Duration::from_secs(5), &[]),
        None,
    )
}
