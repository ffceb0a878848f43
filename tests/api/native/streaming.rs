//! Streams through the native paths: the bytes unchanged (SSE framing included), each
//! event passed on as it arrives, and an upstream cut never turned into a clean end.

use super::*;
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SSE_STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

/// Streams `path` through the service and directly from the mock; both whole.
async fn through_and_direct(app: &TestApp, path: &str) -> (TestResponse, TestResponse) {
    let direct = mock_answer(app, Method::POST, path, BODY).await;
    assert_eq!(direct.status, 200, "{}", direct.text());
    let through = app
        .request(
            Method::POST,
            path,
            &[
                ("x-goog-api-key", CLIENT_KEY),
                JSON_TYPE,
                // What the SDKs send: a compressing hop would buffer the stream.
                ("Accept-Encoding", "gzip, deflate"),
            ],
            BODY,
        )
        .await;
    assert_eq!(through.status, 200, "{}", through.text());
    assert_eq!(through.header("content-encoding"), None);
    (through, direct)
}

#[actix_rt::test]
async fn an_sse_stream_reaches_the_client_byte_for_byte() {
    let app = spawn_app().await;
    app.mock.update_config(|c| c.chunks = 4);
    let (through, direct) = through_and_direct(&app, SSE_STREAM).await;

    assert_eq!(through.header("content-type"), Some("text/event-stream"));
    assert_same_answer(&through.body, &direct.body);
    let text = through.text();
    let events: Vec<&str> = text.split_terminator("\r\n\r\n").collect();
    assert_eq!(events.len(), 4, "{text:?}");
    for event in &events {
        assert!(event.starts_with("data: {"), "{event:?}");
        assert!(!event.contains('\n'), "one line per event: {event:?}");
    }
    assert!(text.ends_with("\r\n\r\n"), "CRLF framing kept");
    assert!(!text.contains("[DONE]"), "nothing appended");
    assert!(
        !text.lines().any(|line| line.starts_with(':')),
        "no comments injected"
    );
    assert_eq!(only_request(&app).path_and_query, SSE_STREAM);
}

#[actix_rt::test]
async fn an_sse_stream_framed_with_bare_newlines_keeps_them() {
    let app = spawn_app().await;
    let path = "/v1beta/models/mock-lf-framing:streamGenerateContent?alt=sse";
    let (through, direct) = through_and_direct(&app, path).await;

    assert_same_answer(&through.body, &direct.body);
    let text = through.text();
    assert!(!text.contains('\r'), "{text:?}");
    assert_eq!(text.matches("\n\n").count(), 3, "{text:?}");
}

#[actix_rt::test]
async fn a_json_array_stream_passes_through_byte_for_byte() {
    let app = spawn_app().await;
    let path = "/v1/models/gemini-2.5-flash:streamGenerateContent";
    let (through, direct) = through_and_direct(&app, path).await;

    assert_eq!(
        through.header("content-type"),
        direct.header("content-type")
    );
    assert_same_answer(&through.body, &direct.body);
    let array = through.json();
    assert_eq!(array.as_array().map(Vec::len), Some(3), "{array}");
    assert_eq!(only_request(&app).path_and_query, path, "no `alt` added");
}

#[actix_rt::test]
async fn the_first_event_reaches_the_client_before_gemini_writes_the_second() {
    let app = spawn_app().await;
    let gap = Duration::from_millis(300);
    app.mock.update_config(|c| {
        c.chunk_delay = gap;
        c.chunks = 3;
    });
    let started = Instant::now();
    let mut response = client()
        .post(format!("{}{SSE_STREAM}", app.address))
        .insert_header(("x-goog-api-key", CLIENT_KEY))
        .insert_header(JSON_TYPE)
        .insert_header(("Accept-Encoding", "gzip, deflate"))
        .send_body(BODY)
        .await
        .expect("the head arrives");
    let head = started.elapsed();
    assert_eq!(response.status(), 200);

    let mut received = Vec::new();
    let mut first_event_at = None;
    while let Some(chunk) = response.next().await {
        received.extend_from_slice(&chunk.expect("the stream reads"));
        let events = received.windows(4).filter(|w| w == b"\r\n\r\n").count();
        if first_event_at.is_none() && events >= 1 {
            first_event_at = Some(started.elapsed());
            assert_eq!(events, 1, "the first event came alone");
        }
    }
    let whole = started.elapsed();
    let first = first_event_at.expect("an event arrived");

    assert!(
        first - head < Duration::from_millis(150),
        "first event {first:?} after a head at {head:?}: buffered?"
    );
    assert!(
        whole - first >= gap * 2 - Duration::from_millis(100),
        "the rest took {:?}; the mock spaces events {gap:?} apart",
        whole - first
    );
    assert_eq!(received.windows(4).filter(|w| w == b"\r\n\r\n").count(), 3);
}

/// Polls `condition` every 20 ms for at most `limit`.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[actix_rt::test]
async fn a_client_that_goes_away_mid_stream_ends_the_upstream_request() {
    let app = spawn_app().await;
    app.mock.update_config(|c| {
        c.chunk_delay = Duration::from_millis(200);
        c.chunks = 100;
    });
    let client = client();
    let mut response = client
        .post(format!("{}{SSE_STREAM}", app.address))
        .insert_header(("x-goog-api-key", CLIENT_KEY))
        .insert_header(JSON_TYPE)
        .send_body(BODY)
        .await
        .expect("the head arrives");
    let first = response.next().await.expect("a first chunk");
    assert!(first.expect("it reads").starts_with(b"data: "));
    assert_eq!(app.mock.in_flight(), 1, "the upstream stream is running");

    drop(response);
    drop(client);

    let ended = eventually(Duration::from_secs(5), || app.mock.streams_cancelled() == 1).await;
    assert!(
        ended,
        "the upstream stream still runs (cancelled {}, in flight {})",
        app.mock.streams_cancelled(),
        app.mock.in_flight()
    );
    assert_eq!(app.mock.streams_completed(), 0);
    assert!(eventually(Duration::from_secs(1), || app.mock.in_flight() == 0).await);
}

#[actix_rt::test]
async fn an_error_event_mid_stream_passes_through() {
    let app = spawn_app().await;
    let path = "/v1beta/models/mock-stream-midway-error:streamGenerateContent?alt=sse";
    let (through, direct) = through_and_direct(&app, path).await;

    assert_same_answer(&through.body, &direct.body);
    let text = through.text();
    let events: Vec<&str> = text.split_terminator("\r\n\r\n").collect();
    assert_eq!(events.len(), 3, "{text:?}");
    let error: serde_json::Value =
        serde_json::from_str(events[2].trim_start_matches("data: ")).expect("a JSON event");
    assert_eq!(error["error"]["code"], 500, "{error}");
    assert_eq!(error["error"]["status"], "INTERNAL", "{error}");
}

#[actix_rt::test]
async fn a_blocked_prompt_streamed_as_one_event_ends_cleanly() {
    let app = spawn_app().await;
    // Gemini answers a blocked prompt with a single event: promptFeedback, no
    // candidates, so no finishReason (docs/gemini-wire.md#sse-streams).
    let path = "/v1beta/models/mock-blocked:streamGenerateContent?alt=sse";
    let response = raw_post(&app, path).await;

    assert!(
        response.head.starts_with("http/1.1 200"),
        "{}",
        response.head
    );
    let text = String::from_utf8_lossy(&response.body);
    assert!(text.contains("\"blockReason\""), "{text:?}");
    assert!(
        response.terminated,
        "a complete blocked-prompt stream was cut for the client: {text:?}"
    );
}

/// A chunked HTTP/1.1 response read off a raw socket, so a missing end is visible
/// (awc reports a connection cut mid-body as a clean end).
struct RawChunked {
    head: String,
    body: Vec<u8>,
    /// Whether the terminating zero-length chunk arrived.
    terminated: bool,
}

/// POSTs `BODY` to `path` on a fresh connection and reads until the server closes it.
async fn raw_post(app: &TestApp, path: &str) -> RawChunked {
    let mut socket = connect(app.port).await;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-goog-api-key: {CLIENT_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        app.port,
        BODY.len()
    );
    socket
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let read_all = async {
        // An error (a reset) ends the response as surely as a close does.
        while let Ok(n @ 1..) = socket.read(&mut buf).await {
            raw.extend_from_slice(&buf[..n]);
            if raw.ends_with(b"\r\n0\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the service ends the response");
    decode_chunked(&raw)
}

fn decode_chunked(raw: &[u8]) -> RawChunked {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(
        head.contains("transfer-encoding: chunked"),
        "not chunked: {head}"
    );
    let mut rest = &raw[split + 4..];
    let mut body = Vec::new();
    let mut terminated = false;
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.trim(), 16).expect("a chunk size");
        if size == 0 {
            terminated = true;
            break;
        }
        let data = &rest[line_end + 2..];
        if data.len() < size + 2 {
            body.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        body.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
    RawChunked {
        head,
        body,
        terminated,
    }
}

#[actix_rt::test]
async fn a_stream_gemini_cuts_is_cut_for_the_client_too() {
    let app = spawn_app().await;
    for (path, framing) in [
        (
            "/v1beta/models/mock-stream-drop:streamGenerateContent?alt=sse",
            "SSE",
        ),
        (
            "/v1beta/models/mock-stream-drop:streamGenerateContent",
            "JSON array",
        ),
    ] {
        let response = raw_post(&app, path).await;
        assert!(
            response.head.starts_with("http/1.1 200"),
            "{}",
            response.head
        );
        assert!(
            !response.terminated,
            "{framing}: a cut stream ended cleanly for the client"
        );
        let text = String::from_utf8_lossy(&response.body);
        assert_eq!(
            text.matches("\"candidates\"").count(),
            2,
            "{framing}: the two events Gemini sent: {text:?}"
        );
    }
    // The same request on a stream that ends properly does end cleanly.
    let complete = raw_post(&app, SSE_STREAM).await;
    assert!(complete.terminated, "{}", complete.head);
}

/// A one-connection upstream that answers any request with `pieces`, written one by
/// one after their pauses, and then closes the connection: the framing and the cut
/// exactly where a test wants them, which the mock (made to be well-behaved on the
/// wire) does not offer.
async fn scripted_upstream(pieces: Vec<(Duration, &'static [u8])>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("an address");
    actix_rt::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        read_request(&mut socket).await;
        for (pause, bytes) in pieces {
            actix_rt::time::sleep(pause).await;
            if socket.write_all(bytes).await.is_err() {
                return;
            }
        }
        // Dropping the socket closes the connection.
    });
    format!("http://{address}")
}

/// Reads one HTTP/1.1 request with a `Content-Length` body.
async fn read_request(socket: &mut tokio::net::TcpStream) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n @ 1..) = socket.read(&mut buf).await else {
            return;
        };
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if raw.len() >= end + 4 + length {
            return;
        }
    }
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

#[actix_rt::test]
async fn events_before_an_abrupt_cut_still_reach_the_client() {
    // The head, one event and the cut arrive together: the service learns of the
    // break in the same instant as of the event.
    let upstream = scripted_upstream(vec![(
        Duration::ZERO,
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
          1c\r\ndata: {\"candidates\": []}\r\n\r\n\r\n",
    )])
    .await;
    let app = spawn_app_with(|settings| {
        settings.insert("GEMINI_BASE_URL".into(), upstream);
    })
    .await;

    let response = raw_post(&app, SSE_STREAM).await;

    assert!(
        response.head.starts_with("http/1.1 200"),
        "{}",
        response.head
    );
    assert_eq!(
        response.body,
        b"data: {\"candidates\": []}\r\n\r\n".as_slice()
    );
    assert!(!response.terminated, "the cut is passed on");
}

#[actix_rt::test]
async fn a_final_event_split_across_chunks_ends_the_stream_cleanly() {
    // Chunk boundaries fall anywhere; here one splits the `finishReason` marker.
    let upstream = scripted_upstream(vec![
        (Duration::ZERO, SSE_HEAD),
        (
            Duration::ZERO,
            b"1d\r\ndata: {\"candidates\": [{\"finis\r\n",
        ),
        (
            Duration::from_millis(50),
            b"17\r\nhReason\": \"STOP\"}]}\r\n\r\n\r\n0\r\n\r\n",
        ),
    ])
    .await;
    let app = spawn_app_with(|settings| {
        settings.insert("GEMINI_BASE_URL".into(), upstream);
    })
    .await;

    let response = raw_post(&app, SSE_STREAM).await;

    assert_eq!(
        String::from_utf8_lossy(&response.body),
        "data: {\"candidates\": [{\"finishReason\": \"STOP\"}]}\r\n\r\n"
    );
    assert!(response.terminated, "a complete stream was cut");
}
