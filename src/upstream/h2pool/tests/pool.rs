//! The pool: connections shared, GOAWAY, cancellation, streams, caps, ALPN.

use super::*;
use futures_util::StreamExt;

#[actix_rt::test]
async fn two_hundred_calls_in_flight_share_two_connections_of_a_hundred_streams() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let (pool, head) = (pool.clone(), server.head("/slow"));
            actix_rt::spawn(async move {
                let mut answer = pool.send(&head, &Bytes::from(format!("call {i}"))).await;
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
        .send(&server.head("/stream"), &Bytes::new())
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
        .send(&server.head("/echo"), &Bytes::from_static(b"hello"))
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
    let body = Bytes::new();
    let hanging = pool.send(&head, &body);
    let dropped = tokio::time::timeout(Duration::from_millis(300), hanging).await;
    assert!(dropped.is_err(), "the server never answers /hang");
    server
        .until("a reset", |s| s.resets.load(Ordering::SeqCst) == 1)
        .await;
    assert_eq!(pool.streams(&server.uri("/")), vec![0]);

    // The server allows one stream: the freed one carries the next call.
    let mut next = pool
        .send(&server.head("/echo"), &Bytes::from_static(b"again"))
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
        .send(&server.head("/stream"), &Bytes::new())
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
        .send(&server.head("/echo"), &big)
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
        .send(&server.head("/echo"), &Bytes::from(vec![b'x'; 100]))
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
    assert!(pool.send(&head, &Bytes::new()).await.unwrap().is_none());
    assert!(pool.send(&head, &Bytes::new()).await.unwrap().is_none());
    assert_eq!(server.accepted(), 1, "the answer is kept per origin");
}

#[actix_rt::test]
async fn plain_http_origins_are_left_to_awc() {
    let server = Server::start(&[b"h2"], 100).await;
    let pool = server.pool();
    let head = Head {
        method: &Method::GET,
        uri: format!("http://{}/echo", server.addr).parse().unwrap(),
        headers: &[],
    };
    assert!(pool.send(&head, &Bytes::new()).await.unwrap().is_none());
    assert_eq!(server.accepted(), 0);
}

/// Sends 100 calls to `/slow` at once, lets them answer once all 100 are in
/// progress on the server, and checks every answer.
async fn hundred_slow_calls(pool: &H2Pool, server: &Server) {
    let head = server.head("/slow");
    let body = Bytes::from_static(b"x");
    let calls = (0..100).map(|_| pool.send(&head, &body));
    let waiting = futures_util::future::join_all(calls);
    let opened = async {
        server
            .until("100 calls in progress", |seen| {
                seen.in_flight.load(Ordering::SeqCst) == 100
            })
            .await;
        server.gate.send_replace(true);
    };
    let (answers, ()) = futures_util::future::join(waiting, opened).await;
    server.gate.send_replace(false);
    for answer in answers {
        let mut answer = answer
            .unwrap_or_else(|e| panic!("a call failed: {e}"))
            .unwrap();
        assert_eq!(answer.read_limited(1024).await.unwrap(), "x");
    }
}

#[actix_rt::test]
async fn a_server_that_refuses_streams_under_its_limit_gets_fewer_at_once() {
    let server = Server::start(&[b"h2"], 100).await;
    server.seen.refuse_above.store(90, Ordering::SeqCst);
    let pool = server.pool();
    let uri = server.uri("/");
    // The first connection refuses the streams past its 90th; each refusal
    // leaves one more place free on it, and the calls go again.
    hundred_slow_calls(&pool, &server).await;
    let refused = pool.refused(&uri);
    assert_eq!(refused, 10, "the streams past the 90th, once each");
    assert_eq!(server.accepted(), 2);
    // Then 90 go on the first connection and 10 on the second: none refused.
    hundred_slow_calls(&pool, &server).await;
    assert_eq!(pool.refused(&uri), refused);
    assert_eq!(server.accepted(), 2);
}

fn conn_state() -> ConnState {
    ConnState {
        in_flight: Cell::new(0),
        max_streams: Cell::new(100),
        headroom: Cell::new(0),
        closed: Cell::new(false),
        opened: Instant::now(),
        idle_since: Cell::new(Instant::now()),
    }
}

#[test]
fn only_refusals_near_the_limit_keep_places_free_and_at_most_a_quarter() {
    let state = conn_state();
    // A server shedding load refuses far under its limit: no change, or the
    // pool would answer load shedding with more connections.
    state.in_flight.set(10);
    state.refused_under_limit();
    assert_eq!(state.room(), 100);
    state.in_flight.set(95);
    state.refused_under_limit();
    assert_eq!(state.room(), 99);
    for _ in 0..100 {
        state.in_flight.set(state.room());
        state.refused_under_limit();
    }
    assert_eq!(state.room(), 75);
}

#[actix_rt::test]
async fn a_refused_call_goes_again_on_another_connection() {
    // Refusing past 50 of the 100 it announces, the first connection keeps
    // refusing after its free places reach their cap (25): a call whose tries
    // all went back to it would run out of them.
    let server = Server::start(&[b"h2"], 100).await;
    server.seen.refuse_above.store(50, Ordering::SeqCst);
    let pool = server.pool();
    hundred_slow_calls(&pool, &server).await;
    assert!(pool.refused(&server.uri("/")) >= 50);
}
