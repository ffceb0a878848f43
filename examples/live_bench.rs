//! What the Live API relay costs: the service's memory with many open idle
//! sessions, and the latency it adds to each relayed message.
//!
//!     scripts/bench-live.sh      (builds and starts everything, then runs this)
//!
//! Against `PROXY` (the service) and `MOCK` (the mock Gemini behind it, as
//! origins `http://127.0.0.1:PORT`), with the client key `KEY`: opens
//! `SESSIONS` sessions through the service and keeps them idle while the
//! script reads the service's RSS (it waits for a line on stdin); then times
//! `TURNS` turns on one session, through the service and directly to the mock
//! alternately, from sending a `clientContent` to the first message back.
// A measurement script: a failure ends it with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};

const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
const SETUP: &str = r#"{"setup":{"model":"models/gemini-2.0-flash-live-001"}}"#;
const TURN: &str =
    r#"{"clientContent":{"turns":[{"role":"user","parts":[{"text":"hi"}]}],"turnComplete":true}}"#;

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A client of its own for every session: one awc client kept about a
/// hundred upgraded connections at most, whatever its pool limit said.
fn new_client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

async fn open(origin: &str, key: &str) -> Socket {
    let client = new_client();
    let url = format!("{}{PATH}", origin.replacen("http://", "ws://", 1));
    let (_, mut socket) = client
        .ws(url)
        .set_header("x-goog-api-key", key)
        .connect()
        .await
        .expect("the WebSocket opens");
    socket.send(Message::Text(SETUP.into())).await.unwrap();
    next_data(&mut socket).await;
    socket
}

/// The next text or binary frame.
async fn next_data(socket: &mut Socket) -> Frame {
    loop {
        match socket
            .next()
            .await
            .expect("a frame")
            .expect("a valid frame")
        {
            frame @ (Frame::Text(_) | Frame::Binary(_)) => return frame,
            Frame::Close(reason) => panic!("closed: {reason:?}"),
            _ => {}
        }
    }
}

/// Time to the first message of a turn's answer; reads the rest of the turn.
async fn turn(socket: &mut Socket) -> Duration {
    let started = Instant::now();
    socket.send(Message::Text(TURN.into())).await.unwrap();
    let mut first = None;
    loop {
        let frame = next_data(socket).await;
        first.get_or_insert_with(|| started.elapsed());
        let bytes = match frame {
            Frame::Text(b) | Frame::Binary(b) => b,
            _ => continue,
        };
        if bytes.windows(12).any(|w| w == b"turnComplete") {
            return first.unwrap_or_default();
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

#[actix_rt::main]
async fn main() {
    let proxy = env("PROXY", "http://127.0.0.1:5001");
    let mock = env("MOCK", "http://127.0.0.1:8089");
    let key = env("KEY", "bench-client-key");
    let sessions: usize = env("SESSIONS", "1000").parse().unwrap();
    let turns: usize = env("TURNS", "1000").parse().unwrap();

    let mut idle = Vec::with_capacity(sessions);
    for opened in 0..sessions {
        if opened % 100 == 0 {
            eprintln!("{opened} sessions open");
        }
        idle.push(open(&proxy, &key).await);
    }
    println!("{sessions} sessions open");
    // The script reads the service's RSS now, then says go on.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(idle);

    let mut through = open(&proxy, &key).await;
    let mut direct = open(&mock, "server-key").await;
    for _ in 0..50 {
        turn(&mut through).await;
        turn(&mut direct).await;
    }
    let (mut via_proxy, mut via_mock) = (Vec::new(), Vec::new());
    for _ in 0..turns {
        via_proxy.push(turn(&mut through).await);
        via_mock.push(turn(&mut direct).await);
    }
    via_proxy.sort();
    via_mock.sort();
    println!(
        "first message of a turn, {turns} turns each: through the service p50 {:.0} µs p99 {:.0} µs; direct to the mock p50 {:.0} µs p99 {:.0} µs",
        percentile(&via_proxy, 0.5),
        percentile(&via_proxy, 0.99),
        percentile(&via_mock, 0.5),
        percentile(&via_mock, 0.99)
    );
    // A turn's first message crosses the relay twice (the client's message up,
    // the answer down): the added latency of one relayed message is half.
    println!(
        "added per relayed message: p50 {:.0} µs, p99 {:.0} µs",
        (percentile(&via_proxy, 0.5) - percentile(&via_mock, 0.5)) / 2.0,
        (percentile(&via_proxy, 0.99) - percentile(&via_mock, 0.99)) / 2.0
    );
}
