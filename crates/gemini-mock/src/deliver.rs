//! Putting a reply on the wire, on time or deliberately badly: first-byte delays, paced
//! stream events, and the transport scenarios (hang, trickle, cut or truncated bodies,
//! wrong content, redirects) that test how the proxy survives a misbehaving upstream.
//! With `split_usage`, a normal delivery also cuts every usage object across two chunks.

use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;

use super::events::Pace;
use super::reply::{Payload, Reply, HTML, JSON};
use super::scenario::Scenario;
use super::split::{cut, cut_steps, SPLIT_USAGE_PAUSE};
use super::state::InFlight;
use super::stream::{paced, ScriptedBody, Step, FLUSH_BEFORE_FAIL};
use super::MockConfig;

/// `slow-first-byte` with no configured delay still has to be slow.
const SLOW_FIRST_BYTE_DEFAULT: Duration = Duration::from_secs(5);
/// `trickle` sends one byte per this interval.
const TRICKLE_INTERVAL: Duration = Duration::from_millis(200);
/// `oversize` is just over the 32 MiB a proxy is likely to cap bodies at.
const OVERSIZE_CHUNKS: usize = 33 * 16;
const OVERSIZE_CHUNK: usize = 64 * 1024;

/// Timing for one request: the configuration, overridden by `x-mock-*` headers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Knobs {
    pub first_byte: Duration,
    pub pace: Pace,
    /// Cut every usage object across two body chunks (`x-mock-split-usage`).
    pub split_usage: bool,
}

pub(crate) fn header_u64(req: &HttpRequest, name: &str) -> Option<u64> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `1`/`true` or `0`/`false`; anything else counts as absent.
pub(crate) fn header_flag(req: &HttpRequest, name: &str) -> Option<bool> {
    let v = req.headers().get(name)?.to_str().ok()?.trim();
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl Knobs {
    pub fn read(req: &HttpRequest, cfg: &MockConfig) -> Knobs {
        let ms = |name, default| header_u64(req, name).map_or(default, Duration::from_millis);
        Knobs {
            first_byte: ms("x-mock-first-byte-delay-ms", cfg.first_byte_delay),
            pace: Pace {
                chunks: header_u64(req, "x-mock-chunks")
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(cfg.chunks),
                gap: ms("x-mock-chunk-delay-ms", cfg.chunk_delay),
                text_bytes: header_u64(req, "x-mock-chunk-text-bytes")
                    .and_then(|n| usize::try_from(n).ok())
                    .or(cfg.chunk_text_bytes),
            },
            split_usage: header_flag(req, "x-mock-split-usage").unwrap_or(cfg.split_usage),
        }
    }
}

/// How the reply travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Normal,
    SlowFirstByte,
    Hang,
    Trickle,
    ResetMidBody,
    ResetBeforeHeaders,
    TruncatedJson,
    NonJson,
    Oversize,
    Redirect,
}

impl Delivery {
    pub fn of(scenario: Option<&Scenario>) -> Delivery {
        match scenario {
            Some(Scenario::SlowFirstByte) => Delivery::SlowFirstByte,
            Some(Scenario::Hang) => Delivery::Hang,
            Some(Scenario::Trickle) => Delivery::Trickle,
            Some(Scenario::ResetMidBody) => Delivery::ResetMidBody,
            Some(Scenario::ResetBeforeHeaders) => Delivery::ResetBeforeHeaders,
            Some(Scenario::TruncatedJson) => Delivery::TruncatedJson,
            Some(Scenario::NonJson) => Delivery::NonJson,
            Some(Scenario::Oversize) => Delivery::Oversize,
            Some(Scenario::Redirect) => Delivery::Redirect,
            _ => Delivery::Normal,
        }
    }
}

/// Headers Google's front end puts on every answer (docs/gemini-wire.md#error-bodies).
pub(crate) fn builder(status: StatusCode, content_type: &'static str) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header(("content-type", content_type))
        .insert_header(("vary", "Origin, X-Origin, Referer"))
        .insert_header(("server", "scaffolding on HTTPServer2"))
        .insert_header(("x-xss-protection", "0"))
        .insert_header(("x-frame-options", "SAMEORIGIN"))
        .insert_header(("x-content-type-options", "nosniff"));
    b
}

pub(crate) async fn send(
    reply: Reply,
    delivery: Delivery,
    knobs: Knobs,
    in_flight: InFlight,
    base_url: &str,
) -> HttpResponse {
    if delivery == Delivery::Hang {
        // Dropped with the connection when the client gives up; the guards then drop too.
        std::future::pending::<()>().await;
    }
    let delay = match delivery {
        Delivery::SlowFirstByte if knobs.first_byte.is_zero() => SLOW_FIRST_BYTE_DEFAULT,
        _ => knobs.first_byte,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match delivery {
        Delivery::Redirect => builder(StatusCode::TEMPORARY_REDIRECT, HTML)
            .insert_header(("location", format!("{base_url}/__mock/redirect-target")))
            .finish(),
        Delivery::NonJson => builder(StatusCode::OK, HTML).body(
            "<html><head><title>Mock</title></head><body>Not JSON: an HTML page from \
             mock-gemini.</body></html>",
        ),
        Delivery::Oversize => {
            builder(StatusCode::OK, JSON).streaming(ScriptedBody::new(oversize(), in_flight))
        }
        Delivery::Trickle => {
            let (status, content_type) = (reply.status, reply.content_type);
            let body = reply.into_body();
            let mut steps = Vec::with_capacity(body.len() * 2);
            for i in 0..body.len() {
                steps.push(Step::Wait(TRICKLE_INTERVAL));
                steps.push(Step::Data(body.slice(i..=i)));
            }
            builder(status, content_type).streaming(ScriptedBody::new(steps, in_flight))
        }
        Delivery::ResetMidBody => {
            let (status, content_type) = (reply.status, reply.content_type);
            let body = reply.into_body();
            let len = u64::try_from(body.len()).unwrap_or(u64::MAX);
            let steps = vec![
                Step::Data(body.slice(..body.len() / 2)),
                Step::Wait(FLUSH_BEFORE_FAIL),
                Step::Fail("mock: reset-mid-body"),
            ];
            builder(status, content_type)
                .body(SizedStream::new(len, ScriptedBody::new(steps, in_flight)))
        }
        Delivery::ResetBeforeHeaders => {
            // actix writes the head into its buffer, polls the body at once, and on this error
            // drops the connection before flushing: the client gets no byte at all.
            let steps = vec![Step::Fail("mock: reset-before-headers")];
            builder(reply.status, reply.content_type).streaming(ScriptedBody::new(steps, in_flight))
        }
        Delivery::TruncatedJson => {
            let (status, content_type) = (reply.status, reply.content_type);
            let body = reply.into_body();
            builder(status, content_type).body(body.slice(..body.len() / 2))
        }
        Delivery::Normal | Delivery::SlowFirstByte | Delivery::Hang => {
            normal(reply, knobs, in_flight)
        }
    }
}

fn normal(reply: Reply, knobs: Knobs, in_flight: InFlight) -> HttpResponse {
    let mut b = builder(reply.status, reply.content_type);
    let split = knobs.split_usage;
    match reply.payload {
        // A whole body cut inside its usage goes out chunked, as upstream's unary answers do.
        Payload::Full(body) => match split.then(|| cut(&body)).flatten() {
            Some((head, tail)) => {
                let steps = [
                    Step::Data(head),
                    Step::Wait(SPLIT_USAGE_PAUSE),
                    Step::Data(tail),
                ];
                b.streaming(ScriptedBody::new(steps, in_flight))
            }
            // A whole body is not a stream: the request stops being in flight here.
            None => b.body(body),
        },
        Payload::Frames(frames) => {
            let steps = paced(frames, knobs.pace.gap);
            b.streaming(ScriptedBody::new(split_if(split, steps), in_flight))
        }
        Payload::FramesThenDrop(frames) => {
            let drop = [
                Step::Wait(FLUSH_BEFORE_FAIL),
                Step::Fail("mock: stream-drop"),
            ];
            let steps = split_if(split, paced(frames, knobs.pace.gap)).chain(drop);
            b.streaming(ScriptedBody::new(steps, in_flight))
        }
    }
}

/// `steps`, with usage objects cut when `split` is on.
fn split_if(
    split: bool,
    steps: impl Iterator<Item = Step> + 'static,
) -> Box<dyn Iterator<Item = Step>> {
    if split {
        Box::new(cut_steps(steps))
    } else {
        Box::new(steps)
    }
}

/// A valid GenerateContentResponse of just over 33 MiB, from one shared 64 KiB filler.
fn oversize() -> Vec<Step> {
    let filler = Bytes::from(vec![b'a'; OVERSIZE_CHUNK]);
    let mut steps = Vec::with_capacity(OVERSIZE_CHUNKS + 2);
    steps.push(Step::Data(Bytes::from_static(
        b"{\n  \"candidates\": [\n    {\n      \"content\": {\n        \"parts\": [\n          {\n            \"text\": \"",
    )));
    steps.extend((0..OVERSIZE_CHUNKS).map(|_| Step::Data(filler.clone())));
    steps.push(Step::Data(Bytes::from_static(
        b"\"\n          }\n        ],\n        \"role\": \"model\"\n      },\n      \"finishReason\": \"STOP\",\n      \"index\": 0\n    }\n  ]\n}\n",
    )));
    steps
}
