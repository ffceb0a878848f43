//! The outermost application middleware: gives every request an id, refuses
//! an oversized request head, writes every error in the shape of its route
//! (the envelope, Google's or OpenAI's), adds `X-Request-Id` and the
//! `RateLimit-*` headers, and writes the access log line and per-client
//! metrics — for a stream, when the stream ends, with how it ended.

use crate::errors::{ApiError, ErrorCode, ResponseCode, Shape};
use crate::request_log::{RequestLog, SharedLog};
use crate::routes::stream::StreamOutcome;
use crate::state::AppState;
use crate::upstream::relay::{StreamEnd, CANCELLED};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The route label for requests that matched no route.
pub const UNMATCHED: &str = "UNMATCHED";
/// The largest request head served (request line and headers). actix-http
/// accepts far more, and refuses past its own limit outside our shapes.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// A request's outcome as the access log and the per-client metrics record it.
struct Outcome<'a> {
    method: &'a str,
    route: &'a str,
    status: u16,
    code: &'a str,
}

/// Writes the access line and counts the client's outcome: once per request,
/// from the response, or from [`Unfinished`] when the request was dropped.
fn record(state: Option<&AppState>, log: &RequestLog, started: Instant, outcome: Outcome<'_>) {
    let client = log.client.as_deref().unwrap_or("anonymous");
    if let (true, Some(state)) = (log.api, state) {
        state
            .metrics
            .client_requests
            .with_label_values(&[client, outcome.code])
            .inc();
    }
    if let Some(live) = &log.live {
        let close = live.close.lock().map(|c| *c).unwrap_or_default();
        let (close_code, closed_by) = close.unwrap_or((1006, "-"));
        log::info!(
            target: "gemini_proxy::access",
            request_id = log.request_id.as_str(),
            client = client,
            method = outcome.method,
            route = outcome.route,
            model = log.model.as_deref().unwrap_or("-"),
            status = outcome.status,
            code = outcome.code,
            messages_to_gemini = live.to_gemini.load(std::sync::atomic::Ordering::Relaxed),
            messages_to_client = live.to_client.load(std::sync::atomic::Ordering::Relaxed),
            close_code = close_code,
            closed_by = closed_by,
            tokens = live.tokens.load(std::sync::atomic::Ordering::Relaxed),
            latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            "live session"
        );
        return;
    }
    log::info!(
        target: "gemini_proxy::access",
        request_id = log.request_id.as_str(),
        client = client,
        method = outcome.method,
        route = outcome.route,
        model = log.model.as_deref().unwrap_or("-"),
        status = outcome.status,
        code = outcome.code,
        attempts = log.attempts,
        tokens = log.tokens,
        latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        "request"
    );
}

/// Records a request dropped before its response was ready, so cancelled
/// requests are counted too.
struct Unfinished {
    log: SharedLog,
    state: Option<web::Data<AppState>>,
    method: actix_web::http::Method,
    started: Instant,
    done: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let log = self.log.0.borrow();
        let outcome = Outcome {
            method: self.method.as_str(),
            route: UNMATCHED,
            status: 499,
            code: CANCELLED,
        };
        record(
            self.state.as_ref().map(|s| s.get_ref()),
            &log,
            self.started,
            outcome,
        );
    }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let request_id = incoming_request_id(req.headers()).unwrap_or_else(new_request_id);
    let shared = SharedLog::default();
    shared.0.borrow_mut().request_id = request_id.clone();
    req.extensions_mut().insert(shared.clone());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let in_flight = state.as_ref().map(|s| InFlight::enter(s));
    let mut unfinished = Unfinished {
        log: shared.clone(),
        state: state.clone(),
        method: req.method().clone(),
        started,
        done: false,
    };

    let shape = Shape::for_path(req.path());
    if head_size(&req) > MAX_HEAD_BYTES {
        unfinished.done = true;
        // Counted for the anonymous client like any refused request.
        shared.0.borrow_mut().api = true;
        let error = ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("the request line and headers are over {MAX_HEAD_BYTES} bytes"),
        );
        record_refusal(&unfinished, &error, started);
        let mut response = error.response(shape);
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        return Ok(req.into_response(response));
    }

    let result = next.call(req).await;
    unfinished.done = true;
    let mut response = match result {
        Ok(response) => in_shape(response.map_into_boxed_body(), shape),
        // An error from a middleware rather than a handler. The request is gone
        // with it, so the error itself carries what the response needs.
        Err(error) => {
            let api_error = as_api_error(&error);
            record_refusal(&unfinished, &api_error, started);
            return Err(MiddlewareError {
                error: api_error,
                shape,
                request_id,
            }
            .into());
        }
    };

    let log = shared.0.borrow();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Some(rate) = log.rate {
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(rate.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(rate.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(rate.reset_secs));
    }
    if let Some(policy) = &log.rate_policy {
        headers.insert(RATELIMIT_POLICY, policy.clone());
    }
    let route = response.request().match_pattern();
    let route = route.as_deref().unwrap_or(UNMATCHED);
    let code = response_code(&response);
    let stream_end = response
        .response()
        .extensions()
        .get::<StreamOutcome>()
        .map(|outcome| outcome.0.clone());
    if let (Some(end), BodySize::Stream) = (stream_end, response.response().body().size()) {
        // A stream's outcome is known only at its end.
        drop(log);
        let pending = PendingRecord {
            // A stream is in flight until it ends, not when its head is sent.
            _in_flight: in_flight,
            state,
            log: shared,
            started,
            method: response.request().method().as_str().to_owned(),
            route: route.to_owned(),
            status: response.status().as_u16(),
            end,
        };
        return Ok(response
            .map_body(|_, body| RecordedAtEnd {
                body,
                record: Some(pending),
            })
            .map_into_boxed_body());
    }
    let outcome = Outcome {
        method: response.request().method().as_str(),
        route,
        status: response.status().as_u16(),
        code,
    };
    record(state.as_ref().map(|s| s.get_ref()), &log, started, outcome);
    drop(log);
    Ok(response)
}

/// The size of the request line and headers, as they came on the wire.
fn head_size(req: &ServiceRequest) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len();
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum::<usize>()
        + line
}

/// What the access line of a stream needs once the stream ends.
struct PendingRecord {
    _in_flight: Option<InFlight>,
    state: Option<web::Data<AppState>>,
    log: SharedLog,
    started: Instant,
    method: String,
    route: String,
    status: u16,
    end: Arc<StreamEnd>,
}

/// A streamed body that writes its request's access line when it is dropped:
/// at its end, or when its client goes away or is cut off.
struct RecordedAtEnd {
    body: BoxBody,
    record: Option<PendingRecord>,
}

impl MessageBody for RecordedAtEnd {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

impl Drop for RecordedAtEnd {
    fn drop(&mut self) {
        let Some(pending) = self.record.take() else {
            return;
        };
        // No word from the pump: the client went away first.
        let code = pending.end.code().unwrap_or(CANCELLED);
        if let Some(tokens) = pending.end.tokens() {
            pending.log.0.borrow_mut().tokens = tokens.total;
        }
        let outcome = Outcome {
            method: &pending.method,
            route: &pending.route,
            status: pending.status,
            code,
        };
        record(
            pending.state.as_ref().map(|s| s.get_ref()),
            &pending.log.0.borrow(),
            pending.started,
            outcome,
        );
    }
}

/// Records a request answered before any route saw it (an oversized head, a
/// middleware's own error).
fn record_refusal(unfinished: &Unfinished, error: &ApiError, started: Instant) {
    let outcome = Outcome {
        method: unfinished.method.as_str(),
        route: UNMATCHED,
        status: error.code.status().as_u16(),
        code: error.code.as_str(),
    };
    record(
        unfinished.state.as_ref().map(|s| s.get_ref()),
        &unfinished.log.0.borrow(),
        started,
        outcome,
    );
}

/// An error raised by a middleware, answered in its route's shape with its request id.
#[derive(Debug)]
struct MiddlewareError {
    error: ApiError,
    shape: Shape,
    request_id: String,
}

impl std::fmt::Display for MiddlewareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl ResponseError for MiddlewareError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error.status_code()
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let mut response = self.error.response(self.shape);
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        response
    }
}

/// A middleware's own error (actix-cors answers a refused origin in plain text)
/// as the service's error, so every error leaves in the envelope.
fn as_api_error(error: &Error) -> ApiError {
    if let Some(api_error) = error.as_error::<ApiError>() {
        return api_error.clone();
    }
    if error.as_response_error().status_code().is_client_error() {
        ApiError::new(ErrorCode::InvalidRequest, error.to_string())
    } else {
        ApiError::new(ErrorCode::InternalError, "the request could not be handled")
    }
}

/// Writes an error response in its route's shape: the service's own errors
/// (written as the envelope by the handler) again in Google's or OpenAI's
/// shape where the route speaks it, and a middleware's plain-text refusal
/// (actix-cors refuses an origin in plain text) as the service's error.
fn in_shape(response: ServiceResponse, shape: Shape) -> ServiceResponse {
    let api_error = match response.response().error() {
        Some(error) => match error.as_error::<ApiError>() {
            Some(_) if shape == Shape::Envelope => return response,
            Some(api_error) => api_error.clone(),
            None => {
                let is_json = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
                if is_json {
                    return response;
                }
                as_api_error(error)
            }
        },
        None => return response,
    };
    let mut reshaped = api_error.response(shape);
    // Keep what the refusing handler or middleware said besides the body
    // (`Allow`, actix-cors' `Vary`).
    for (name, value) in response.headers() {
        if ![
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::RETRY_AFTER,
        ]
        .contains(name)
        {
            reshaped.headers_mut().append(name.clone(), value.clone());
        }
    }
    response.into_response(reshaped)
}

/// The outcome code of a response: the error's code, or the code its handler
/// attached. Every response the service writes has one; a response without
/// is a bug, counted as one.
fn response_code(response: &ServiceResponse) -> &'static str {
    if let Some(error) = response.response().error() {
        if let Some(api_error) = error.as_error::<ApiError>() {
            return api_error.code.as_str();
        }
    }
    if let Some(ResponseCode(code)) = response.response().extensions().get::<ResponseCode>() {
        return code;
    }
    if response.status().is_success() || response.status().is_redirection() {
        "OK"
    } else {
        log::error!(
            "a {} response left without an error code; counted INTERNAL_ERROR",
            response.status()
        );
        ErrorCode::InternalError.as_str()
    }
}

/// The client's own id when it is 1–128 characters of `A-Z a-z 0-9 . _ -`.
fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID)?.as_bytes();
    let valid = (1..=128).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    valid.then(|| String::from_utf8_lossy(value).into_owned())
}

fn new_request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Counts a request in `gemini_proxy_in_flight_requests` until dropped, so a
/// cancelled request leaves the gauge too.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn enter(state: &AppState) -> InFlight {
        state.metrics.in_flight.inc();
        InFlight(state.metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_str(value).unwrap());
        incoming_request_id(&headers)
    }

    #[test]
    fn keeps_a_well_formed_request_id_only() {
        assert_eq!(id("abc-123_X.y").as_deref(), Some("abc-123_X.y"));
        assert_eq!(id(&"a".repeat(128)).map(|s| s.len()), Some(128));
        assert_eq!(id(&"a".repeat(129)), None);
        assert_eq!(id("has space"), None);
        assert_eq!(id("semi;colon"), None);
        assert_eq!(new_request_id().len(), 32);
    }
}
