//! What `exchange` sees of the pool: the adapter, and the pipeline run over
//! HTTP/2 end to end.

use super::*;
use crate::errors::ErrorCode;
use crate::upstream::pipeline;
use futures_util::StreamExt;

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
        &headers,
        &Bytes::new(),
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
        &[],
        &Bytes::from(vec![b'x'; 100]),
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
        &[],
        &Bytes::new(),
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
        &[],
        &Bytes::new(),
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
    let failure = adapter::send(&awc_client(), &pool, &Method::GET, &url, &[], &Bytes::new())
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
        egress: Default::default(),
        ownership: crate::ownership::Ownership::memory(16),
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
    use crate::upstream::ReplyBody;
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let outcome = run_pipeline(&pool, &context, call("/headers")).await;
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
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let outcome = run_pipeline(&pool, &context, call("/busy")).await;
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
    use crate::upstream::ReplyBody;
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let outcome = run_pipeline(&pool, &context, stream_call()).await;
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
    use crate::upstream::ReplyBody;
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let outcome = run_pipeline(&pool, &context, stream_call()).await;
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

/// The one direct route, as an actor without egress proxies has it.
fn direct<T: Clone>(client: T) -> crate::upstream::egress::Clients<T> {
    crate::upstream::egress::Clients::build(&Default::default(), |_| client.clone())
}

/// Runs the pipeline once with `pool` (and a direct awc client beside it).
async fn run_pipeline(
    pool: &H2Pool,
    context: &Arc<crate::upstream::UpstreamContext>,
    call: crate::upstream::UpstreamCall,
) -> crate::upstream::pipeline::CallOutcome {
    let permit = crate::upstream::pool::Permit::for_tests(context.clone());
    pipeline::run(
        &direct(awc_client()),
        &direct(pool.clone()),
        context,
        Box::new(call),
        permit,
    )
    .await
}

#[actix_rt::test]
async fn calls_through_a_server_that_ends_connections_after_a_count_are_all_answered_once() {
    let server = Server::start(&[b"h2"], 100).await;
    server.seen.rotate_after.store(150, Ordering::SeqCst);
    let (pool, context) = (server.pool(), context(&server));
    // Waves of 40 straddle each connection's 150th request: the streams its
    // GOAWAY refused go again on another connection (a connection closed
    // before this side read the GOAWAY is the pipeline's retry).
    for _ in 0..15 {
        let calls = (0..40).map(|_| run_pipeline(&pool, &context, call("/echo")));
        for outcome in futures_util::future::join_all(calls).await {
            let reply = outcome.result.unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(reply.status, http::StatusCode::OK);
        }
    }
    assert!(server.accepted() >= 4, "the server ended its connections");
    assert_eq!(
        server.seen.requests.load(Ordering::SeqCst),
        600,
        "each call once"
    );
}

/// Every call waiting for its answer holds the pipeline's future, so its size
/// is memory per call in flight (docs/architecture.md#http2-upstream-calls-share-connections).
/// Opening a connection and awc's request were once inside it (6.3 KB a call
/// in a debug build), then the layers below it kept second copies of their
/// arguments and of the request head (1.9 KB); it is 816 bytes now, in debug
/// and release builds alike. If this fails, a large step has come into the
/// waiting future: box it where it happens.
#[actix_rt::test]
async fn a_call_waiting_for_its_answer_holds_a_small_future() {
    let server = Server::start(&[b"h2"], 100).await;
    let (pool, context) = (server.pool(), context(&server));
    let (clients, h2) = (direct(awc_client()), direct(pool.clone()));
    let permit = crate::upstream::pool::Permit::for_tests(context.clone());
    let call = pipeline::run(&clients, &h2, &context, Box::new(call("/")), permit);
    let size = std::mem::size_of_val(&call);
    assert!(size <= 960, "the pipeline's future is {size} bytes");
    let head = server.head("/");
    let body = Bytes::new();
    let send = pool.send(&head, &body);
    let size = std::mem::size_of_val(&send);
    assert!(size <= 192, "the HTTP/2 pool's future is {size} bytes");
}
