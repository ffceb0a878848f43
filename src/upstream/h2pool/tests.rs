//! The pool against a local HTTP/2 server over TLS (the h2 crate's server,
//! with a CA made here): connections counted on the server's side.

use super::*;
use crate::errors::ErrorCode;
use crate::upstream::pipeline;
use futures_util::StreamExt;
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
        H2Pool::new(&tls, Duration::from_secs(5))
    }

    fn uri(&self, path: &str) -> Uri {
        format!("https://{}{path}", self.addr).parse().unwrap()
    }

    fn head(&self, path: &str) -> Head {
        Head {
            method: Method::POST,
            uri: self.uri(path),
            headers: HeaderMap::new(),
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
    loop {
        let accepted = tokio::select! {
            accepted = conn.accept() => accepted,
            _ = seen.goaway.notified(), if !going_away => {
                going_away = true;
                conn.graceful_shutdown();
                continue;
            }
        };
        let Some(Ok((request, respond))) = accepted else {
            return;
        };
        actix_rt::spawn(answer(request, respond, index, seen.clone(), gate.clone()));
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

use bytes::BytesMut;

fn connection_of(response: &H2Response) -> String {
    response.headers()["x-connection"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[actix_rt::test]
async fn two_hundred_calls_in_flight_share_two_connections_of_a_hundred_streams() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let (pool, head) = (pool.clone(), server.head("/slow"));
            actix_rt::spawn(async move {
                let mut answer = pool.send(&head, Bytes::from(format!("call {i}"))).await;
                let answer = answer.as_mut().unwrap().as_mut().unwrap();
                answer.read_limited(1024).await.unwrap()
            })
        })
        .collect();
    server
        .until("200 calls", |s| s.in_flight.load(Ordering::SeqCst) == 200)
        .await;
    assert_eq!(server.accepted(), 2);
    assert_eq!(pool.streams(&server.uri("/")), vec![100, 100]);
    server.gate.send_replace(true);
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), format!("call {i}").as_bytes());
    }
    assert_eq!(server.accepted(), 2);
    assert_eq!(pool.streams(&server.uri("/")), vec![0, 0]);
}

#[actix_rt::test]
async fn a_connection_that_received_goaway_takes_no_new_streams_and_its_calls_finish() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let mut first = pool
        .send(&server.head("/stream"), Bytes::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection_of(&first), "0");
    assert_eq!(first.next().await.unwrap().unwrap(), "first");

    server.seen.goaway.notify_waiters();
    let uri = server.uri("/");
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while pool.taking_streams(&uri) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    seen.await.expect("the pool never saw the GOAWAY");
    let mut second = pool
        .send(&server.head("/echo"), Bytes::from_static(b"hello"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection_of(&second), "1");
    assert_eq!(second.read_limited(1024).await.unwrap(), "hello");
    assert_eq!(server.accepted(), 2);

    server.seen.step.notify_one();
    assert_eq!(first.next().await.unwrap().unwrap(), "second");
    assert!(
        first.next().await.is_none(),
        "the call on the old connection ends cleanly"
    );
    assert_eq!(pool.streams(&server.uri("/")), vec![0]);
}

#[actix_rt::test]
async fn a_dropped_call_resets_its_stream_and_frees_its_place() {
    let server = Server::start(&[b"h2"], 1).await;
    let pool = server.pool();
    let head = server.head("/hang");
    let hanging = pool.send(&head, Bytes::new());
    let dropped = tokio::time::timeout(Duration::from_millis(300), hanging).await;
    assert!(dropped.is_err(), "the server never answers /hang");
    server
        .until("a reset", |s| s.resets.load(Ordering::SeqCst) == 1)
        .await;
    assert_eq!(pool.streams(&server.uri("/")), vec![0]);

    // The server allows one stream: the freed one carries the next call.
    let mut next = pool
        .send(&server.head("/echo"), Bytes::from_static(b"again"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.read_limited(1024).await.unwrap(), "again");
    assert_eq!(server.accepted(), 1);
}

#[actix_rt::test]
async fn a_streamed_answer_arrives_chunk_by_chunk() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let mut answer = pool
        .send(&server.head("/stream"), Bytes::new())
        .await
        .unwrap()
        .unwrap();
    // The second chunk is sent only after the first was read here.
    let first = tokio::time::timeout(Duration::from_secs(5), answer.next()).await;
    assert_eq!(first.unwrap().unwrap().unwrap(), "first");
    server.seen.step.notify_one();
    assert_eq!(answer.next().await.unwrap().unwrap(), "second");
    assert!(answer.next().await.is_none());
}

#[actix_rt::test]
async fn bodies_larger_than_the_flow_control_windows_go_both_ways() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let big = Bytes::from(vec![b'x'; 3 * 1024 * 1024]);
    let mut answer = pool
        .send(&server.head("/echo"), big.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.read_limited(4 * 1024 * 1024).await.unwrap(), big);
}

#[actix_rt::test]
async fn a_body_past_the_limit_is_refused() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let mut answer = pool
        .send(&server.head("/echo"), Bytes::from(vec![b'x'; 100]))
        .await
        .unwrap()
        .unwrap();
    let read = answer.read_limited(99).await;
    assert!(matches!(read, Err(BodyError::Overflow(99))), "{read:?}");
}

#[actix_rt::test]
async fn an_origin_that_picks_http1_by_alpn_is_left_to_awc_from_then_on() {
    let server = Server::start(&[b"http/1.1"], 100).await;
    let pool = server.pool();
    let head = server.head("/echo");
    assert!(pool.send(&head, Bytes::new()).await.unwrap().is_none());
    assert!(pool.send(&head, Bytes::new()).await.unwrap().is_none());
    assert_eq!(server.accepted(), 1, "the answer is kept per origin");
}

#[actix_rt::test]
async fn plain_http_origins_are_left_to_awc() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let head = Head {
        method: Method::GET,
        uri: format!("http://{}/echo", server.addr).parse().unwrap(),
        headers: HeaderMap::new(),
    };
    assert!(pool.send(&head, Bytes::new()).await.unwrap().is_none());
    assert_eq!(server.accepted(), 0);
}

// ---------------------------------------------------------------- the adapter

fn awc_client() -> awc::Client {
    crate::upstream::client::build(Duration::from_secs(5))
}

#[actix_rt::test]
async fn the_adapter_sends_the_call_over_http2_and_reads_the_answer_like_awcs() {
    use adapter::Answer;
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let headers = vec![
        (
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        ),
        (
            http::HeaderName::from_static("x-goog-api-key"),
            http::HeaderValue::from_static("key-0"),
        ),
        // Hop-by-hop: HTTP/2 forbids it, so it is left out rather than refused.
        (
            http::header::CONNECTION,
            http::HeaderValue::from_static("keep-alive"),
        ),
    ];
    let url = format!("https://{}/headers", server.addr);
    let mut answer = adapter::send(
        &awc_client(),
        &pool,
        &Method::POST,
        &url,
        headers,
        Bytes::new(),
    )
    .await
    .unwrap_or_else(|f| panic!("{}", f.message));
    assert!(matches!(answer, Answer::H2(_)));
    assert_eq!(answer.status(), http::StatusCode::OK);
    let connection = http::HeaderName::from_static("x-connection");
    assert_eq!(answer.header(&connection).unwrap(), "0");
    assert!(answer.headers().any(|(name, _)| name == connection));
    let body = answer
        .body(1024)
        .await
        .unwrap_or_else(|f| panic!("{}", f.message));
    let expected = format!(
        "key-0|application/json|gemini-proxy/{}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(body, expected.as_bytes());

    let url = format!("https://{}/echo", server.addr);
    let mut answer = adapter::send(
        &awc_client(),
        &pool,
        &Method::POST,
        &url,
        vec![],
        Bytes::from(vec![b'x'; 100]),
    )
    .await
    .unwrap_or_else(|f| panic!("{}", f.message));
    let refused = answer.body(99).await.err().unwrap();
    assert_eq!(refused.code, ErrorCode::UpstreamError);
}

#[actix_rt::test]
async fn the_adapter_relays_a_stream_over_http2_chunk_by_chunk() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let url = format!("https://{}/stream", server.addr);
    let mut answer = adapter::send(
        &awc_client(),
        &pool,
        &Method::POST,
        &url,
        vec![],
        Bytes::new(),
    )
    .await
    .unwrap_or_else(|f| panic!("{}", f.message));
    assert_eq!(answer.next().await.unwrap().unwrap(), "first");
    server.seen.step.notify_one();
    assert_eq!(answer.next().await.unwrap().unwrap(), "second");
    assert!(answer.next().await.is_none());
}

#[actix_rt::test]
async fn the_adapter_leaves_plain_http_to_awc_and_classifies_its_failures() {
    let pool = Server::start(&[b"h2"], 100).await.pool();
    // Nothing listens on port 9 (discard): awc is refused.
    let failure = adapter::send(
        &awc_client(),
        &pool,
        &Method::GET,
        "http://127.0.0.1:9/x",
        vec![],
        Bytes::new(),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(failure.code, ErrorCode::UpstreamUnavailable);
    assert!(failure.retryable);
}

#[actix_rt::test]
async fn the_adapter_classifies_a_refused_http2_connection_as_retryable() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/x", closed.local_addr().unwrap());
    drop(closed);
    let failure = adapter::send(
        &awc_client(),
        &pool,
        &Method::GET,
        &url,
        vec![],
        Bytes::new(),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(failure.code, ErrorCode::UpstreamUnavailable);
    assert!(failure.retryable);
}

// ---------------------------------------------------------------- the pipeline

fn context(server: &Server) -> Arc<crate::upstream::UpstreamContext> {
    use crate::upstream::key_pool::KeyPool;
    use crate::upstream::leak_guard::LeakGuard;
    use crate::upstream::relay::StreamTimeouts;
    use crate::upstream::retry_budget::RetryBudget;
    let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
    Arc::new(crate::upstream::UpstreamContext {
        base_url: format!("https://{}", server.addr),
        keys: KeyPool::new(&[], metrics.clone()),
        leak_guard: LeakGuard::new(&[]),
        metrics,
        retry_budget: RetryBudget::default(),
        stream_timeouts: StreamTimeouts {
            gap: Duration::from_secs(5),
            stall: Duration::from_secs(5),
        },
    })
}

fn call(path: &str) -> crate::upstream::UpstreamCall {
    use crate::upstream::{Credential, Expect, KeyStyle, UpstreamCall};
    UpstreamCall {
        method: Method::POST,
        path: path.to_owned(),
        query: String::new(),
        credential: Credential::Client(http::HeaderValue::from_static("client-key")),
        key_style: KeyStyle::GoogHeader,
        headers: Vec::new(),
        body: Bytes::from_static(br#"{"contents":[]}"#),
        framing: crate::upstream::stream_reader::Framing::Unary,
        expect: Expect::Relay,
        model: "m".to_owned(),
        client: Arc::from("client"),
        counts_tokens: false,
        deadline: Instant::now() + Duration::from_secs(10),
        charge: crate::quota::Charge::none(),
    }
}

#[actix_rt::test]
async fn the_pipeline_relays_an_answer_that_came_over_http2() {
    use crate::upstream::{pool::Permit, ReplyBody};
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let permit = Permit::for_tests(context.clone());
    let outcome = pipeline::run(&awc_client(), &pool, &context, call("/headers"), permit).await;
    let reply = outcome.result.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(reply.status, http::StatusCode::OK);
    let ReplyBody::Full(body) = reply.body else {
        panic!("a unary answer")
    };
    let expected = format!(
        "client-key|application/json|gemini-proxy/{}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(body, expected.as_bytes());
    assert_eq!(server.accepted(), 1);
}

#[actix_rt::test]
async fn the_pipeline_retries_a_503_over_http2_on_the_same_connection() {
    use crate::upstream::pool::Permit;
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let permit = Permit::for_tests(context.clone());
    let outcome = pipeline::run(&awc_client(), &pool, &context, call("/busy"), permit).await;
    assert_eq!(outcome.attempts, 3, "the first try and two retries");
    // Gemini's own answer goes back once the retries are spent.
    let reply = outcome.result.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(reply.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 3);
    assert_eq!(server.accepted(), 1);
}

fn stream_call() -> crate::upstream::UpstreamCall {
    crate::upstream::UpstreamCall {
        framing: crate::upstream::stream_reader::Framing::GeminiSse,
        ..call("/sse")
    }
}

#[actix_rt::test]
async fn the_pipeline_relays_a_stream_over_http2_event_by_event() {
    use crate::upstream::{pool::Permit, ReplyBody};
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let permit = Permit::for_tests(context.clone());
    let outcome = pipeline::run(&awc_client(), &pool, &context, stream_call(), permit).await;
    let reply = outcome.result.unwrap_or_else(|e| panic!("{e:?}"));
    let ReplyBody::Stream(mut relay) = reply.body else {
        panic!("a stream")
    };
    assert_eq!(
        relay.chunks.recv().await.unwrap().unwrap(),
        "data: {\"n\":1}\n\n"
    );
    server.seen.step.notify_one();
    assert_eq!(relay.chunks.recv().await.unwrap().unwrap(), LAST_EVENT);
    let end = relay.chunks.recv().await;
    assert!(end.is_none(), "{:?}", end.map(|e| e.map_err(|b| b.0)));
    relay.end.drained();
    assert_eq!(relay.end.code(), Some("OK"));
    assert_eq!(pool.streams(&server.uri("/")), vec![0]);
}

#[actix_rt::test]
async fn a_client_gone_mid_stream_resets_the_http2_stream_and_frees_its_place() {
    use crate::upstream::{pool::Permit, ReplyBody};
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let permit = Permit::for_tests(context.clone());
    let outcome = pipeline::run(&awc_client(), &pool, &context, stream_call(), permit).await;
    let reply = outcome.result.unwrap_or_else(|e| panic!("{e:?}"));
    let ReplyBody::Stream(mut relay) = reply.body else {
        panic!("a stream")
    };
    assert!(relay.chunks.recv().await.unwrap().is_ok());
    drop(relay);
    server
        .until("a reset", |s| s.resets.load(Ordering::SeqCst) == 1)
        .await;
    assert_eq!(pool.streams(&server.uri("/")), vec![0]);
}
