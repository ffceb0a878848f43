//! One exchange with Gemini: the request built from the call and a key, the
//! answer read (bounded, within the deadline) and classified, and a stream
//! handed to its relay. The attempt policy around it is `pipeline`'s.

use super::classify::{self, Failure, KeyOwner};
use super::client::MAX_RESPONSE_BYTES;
use super::h2pool::{adapter, H2Pool};
use super::pipeline::{Expect, KeyStyle, Reply, ReplyBody, UpstreamCall, UpstreamContext};
use super::pool::Permit;
use super::relay::{self, TokenSink};
use super::stream_reader::{unary_tokens, Framing, StreamReader, Tokens};
use crate::errors::ErrorCode;
use crate::quota::Charge;
use awc::http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use awc::http::StatusCode;
use awc::Client;
use bytes::Bytes;
use std::time::Instant;

/// Error bodies are read whole to classify them; Gemini's are small.
const MAX_ERROR_BODY_BYTES: usize = 1024 * 1024;
/// Response headers passed back to the client; everything else is hop-by-hop
/// or Google-internal.
const PASSED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "retry-after",
    "server-timing",
    // The resumable upload protocol (docs/gemini-wire.md); the upload URL is
    // rewritten by the files route before it leaves.
    "x-goog-upload-url",
    "x-goog-upload-status",
    "x-goog-upload-chunk-granularity",
    "x-goog-upload-size-received",
];

/// The result of one attempt.
pub(super) enum Attempt {
    Success(Reply),
    /// A failed attempt; `answer` is Gemini's error answer, if it sent one.
    Failure {
        failure: Failure,
        answer: Option<ErrorAnswer>,
    },
}

/// A Gemini error answer, kept whole in case it is relayed.
pub(super) struct ErrorAnswer {
    pub(super) status: StatusCode,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) body: Bytes,
}

/// What every attempt of one call shares.
#[derive(Clone, Copy)]
pub(super) struct Plan<'a> {
    pub(super) client: &'a Client,
    pub(super) h2: &'a H2Pool,
    pub(super) context: &'a UpstreamContext,
    pub(super) call: &'a UpstreamCall,
    pub(super) url: &'a str,
    /// When the first attempt started.
    pub(super) started: Instant,
}

pub(super) async fn attempt(
    plan: Plan<'_>,
    key: HeaderValue,
    owner: KeyOwner,
    permit: &mut Option<Permit>,
    charge: &mut Option<Charge>,
) -> Attempt {
    let Plan {
        client,
        h2,
        context,
        call,
        url,
        started: call_started,
    } = plan;
    let deadline = tokio::time::Instant::from_std(call.deadline);
    let mut headers = call.headers.clone();
    // Bodies always go as JSON, whatever the client said: an answer the
    // service cannot read (protobuf, say) would slip its tokens and errors past it.
    if call.method == awc::http::Method::POST {
        headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    }
    headers.push(match call.key_style {
        KeyStyle::GoogHeader => (HeaderName::from_static("x-goog-api-key"), key),
        KeyStyle::Bearer => (AUTHORIZATION, bearer(&key)),
    });
    let sent = adapter::send(client, h2, &call.method, url, &headers, &call.body);
    let mut response = match tokio::time::timeout_at(deadline, sent).await {
        Err(_) => return failed(classify::deadline_passed()),
        Ok(Err(failure)) => return failed(failure),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    // `/gemini-proxy` writes its own answer: no header of Gemini's goes back.
    let headers = match call.expect {
        Expect::Relay => passed_headers(response.headers()),
        Expect::Answer => Vec::new(),
    };

    if !status.is_success() {
        let body = tokio::time::timeout_at(deadline, response.body(MAX_ERROR_BODY_BYTES)).await;
        let body = match body {
            Err(_) => return failed(classify::deadline_passed()),
            Ok(Err(failure)) => return failed(failure),
            Ok(Ok(body)) => body,
        };
        return Attempt::Failure {
            failure: classify::classify_failure(status.as_u16(), &body, owner),
            answer: Some(ErrorAnswer {
                status,
                headers,
                body,
            }),
        };
    }

    if call.framing == Framing::Unary {
        let body = tokio::time::timeout_at(deadline, response.body(MAX_RESPONSE_BYTES));
        let body = match body.await {
            Err(_) => return failed(classify::deadline_passed()),
            Ok(Err(failure)) => return failed(failure),
            Ok(Ok(body)) => body,
        };
        let answer = match call.expect {
            Expect::Relay => None,
            Expect::Answer if status != StatusCode::OK => {
                return failed(Failure::new(
                    ErrorCode::UpstreamError,
                    format!("Gemini answered with status {status} instead of 200"),
                ))
            }
            Expect::Answer => match classify::read_answer(&body) {
                Ok(answer) => Some(answer),
                Err(failure) => return failed(failure),
            },
        };
        let tokens = match (&answer, call.counts_tokens) {
            // Already read with the answer: no second pass over the body.
            (Some(answer), true) => Some(Tokens::from(answer.usage)),
            (None, true) => unary_tokens(&body),
            (_, false) => None,
        };
        return Attempt::Success(Reply {
            status,
            headers,
            body: ReplyBody::Full(body),
            failure: None,
            answer,
            tokens,
        });
    }

    let declared_length = response
        .header(&CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let sink = TokenSink {
        metrics: context.metrics.clone(),
        client: call.client.clone(),
        model_label: context.metrics.model_succeeded(&call.model),
        counts_tokens: call.counts_tokens,
        started: call_started,
        charge: charge.take(),
    };
    let relay = relay::start(
        response,
        StreamReader::new(call.framing, declared_length),
        context.stream_timeouts,
        sink,
        permit.take(),
    );
    Attempt::Success(Reply {
        status,
        headers,
        body: ReplyBody::Stream(relay),
        failure: None,
        answer: None,
        tokens: None,
    })
}

fn failed(failure: Failure) -> Attempt {
    Attempt::Failure {
        failure,
        answer: None,
    }
}

fn bearer(key: &HeaderValue) -> HeaderValue {
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(key.as_bytes());
    let mut header =
        HeaderValue::from_bytes(&value).unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

fn passed_headers<'h>(
    headers: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .filter(|(name, _)| PASSED_RESPONSE_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}
