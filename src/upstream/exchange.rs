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
use std::future::Future;
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

/// One attempt. Every call in flight holds this future while it waits for
/// its answer, so it is not an `async fn` (one of those keeps a second copy
/// of its arguments), and the answer's body is read at one place only (a
/// local kept across two waits has room in every state of the future).
pub(super) fn attempt<'a>(
    plan: Plan<'a>,
    key: HeaderValue,
    owner: KeyOwner,
    permit: &'a mut Option<Permit>,
    charge: &'a mut Option<Charge>,
) -> impl Future<Output = Attempt> + 'a {
    let call = plan.call;
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
    async move {
        let deadline = tokio::time::Instant::from_std(call.deadline);
        let sent = adapter::send(
            plan.client,
            plan.h2,
            &call.method,
            plan.url,
            &headers,
            &call.body,
        );
        let mut response = match tokio::time::timeout_at(deadline, sent).await {
            Err(_) => return failed(classify::deadline_passed()),
            Ok(Err(failure)) => return failed(failure),
            Ok(Ok(response)) => response,
        };
        // Not kept across the wait for the body.
        drop(headers);
        let status = response.status();
        // `/gemini-proxy` writes its own answer: no header of Gemini's goes back.
        let headers = match call.expect {
            Expect::Relay => passed_headers(response.headers()),
            Expect::Answer => Vec::new(),
        };
        let succeeded = status.is_success();
        if succeeded && call.framing != Framing::Unary {
            return stream(plan, response, status, headers, permit, charge);
        }
        let limit = if succeeded {
            MAX_RESPONSE_BYTES
        } else {
            MAX_ERROR_BODY_BYTES
        };
        let body = match tokio::time::timeout_at(deadline, response.body(limit)).await {
            Err(_) => return failed(classify::deadline_passed()),
            Ok(Err(failure)) => return failed(failure),
            Ok(Ok(body)) => body,
        };
        drop(response);
        if !succeeded {
            return Attempt::Failure {
                failure: classify::classify_failure(status.as_u16(), &body, owner),
                answer: Some(ErrorAnswer {
                    status,
                    headers,
                    body,
                }),
            };
        }
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
        Attempt::Success(Reply {
            status,
            headers,
            body: ReplyBody::Full(body),
            failure: None,
            answer,
            tokens,
        })
    }
}

/// A stream's answer, handed to its relay.
fn stream(
    plan: Plan<'_>,
    response: adapter::Answer,
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    permit: &mut Option<Permit>,
    charge: &mut Option<Charge>,
) -> Attempt {
    let (call, context) = (plan.call, plan.context);
    let declared_length = response
        .header(&CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let sink = TokenSink {
        metrics: context.metrics.clone(),
        client: call.client.clone(),
        model_label: context.metrics.model_succeeded(&call.model),
        counts_tokens: call.counts_tokens,
        started: plan.started,
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
