//! The outermost application middleware: gives every request an id, turns any
//! error a middleware raised into the envelope, adds `X-Request-Id` and the
//! `RateLimit-*` headers, and writes the access log line and per-client metrics.

use crate::errors::{ApiError, ErrorCode, ResponseCode, Shape};
use crate::request_log::{RequestLog, SharedLog};
use crate::startup::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};
use std::time::Instant;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The route label for requests that matched no route.
pub const UNMATCHED: &str = "UNMATCHED";

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

/// The code of a request dropped before its answer (the client went away);
/// like nginx's 499 and google.rpc's CANCELLED.
pub const CANCELLED: &str = "CANCELLED";

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
    let _in_flight = state.as_ref().map(|s| InFlight::enter(s));
    let mut unfinished = Unfinished {
        log: shared.clone(),
        state: state.clone(),
        method: req.method().clone(),
        started,
        done: false,
    };

    let result = next.call(req).await;
    unfinished.done = true;
    let mut response = match result {
        Ok(response) => in_the_envelope(response.map_into_boxed_body()),
        // An error from a middleware rather than a handler. The request is gone
        // with it, so the error itself carries what the response needs.
        Err(error) => {
            let api_error = as_api_error(&error);
            let outcome = Outcome {
                method: unfinished.method.as_str(),
                route: UNMATCHED,
                status: api_error.code.status().as_u16(),
                code: api_error.code.as_str(),
            };
            record(
                state.as_ref().map(|s| s.get_ref()),
                &shared.0.borrow(),
                started,
                outcome,
            );
            return Err(MiddlewareError {
                error: api_error,
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
    let route = response.request().match_pattern();
    let outcome = Outcome {
        method: response.request().method().as_str(),
        route: route.as_deref().unwrap_or(UNMATCHED),
        status: response.status().as_u16(),
        code: response_code(&response),
    };
    record(state.as_ref().map(|s| s.get_ref()), &log, started, outcome);
    Ok(response)
}

/// An error raised by a middleware, answered in the envelope with its request id.
#[derive(Debug)]
struct MiddlewareError {
    error: ApiError,
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
        let mut response = self.error.error_response();
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

/// Rewrites an error response that is not JSON (actix-cors refuses an origin in
/// plain text) into the error shape of its route. JSON errors are the service's
/// own, already in that shape, and pass unchanged.
fn in_the_envelope(response: ServiceResponse) -> ServiceResponse {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    let api_error = match response.response().error() {
        Some(error) if !is_json => {
            as_api_error(error).in_shape(Shape::for_path(response.request().path()))
        }
        _ => return response,
    };
    let mut envelope = api_error.error_response();
    // Keep what the refusing middleware said about caching (actix-cors: `Vary`).
    if let Some(vary) = response.headers().get(header::VARY) {
        envelope.headers_mut().insert(header::VARY, vary.clone());
    }
    response.into_response(envelope)
}

/// The outcome code of a response: the error's code, a code a handler attached,
/// or one derived from the status.
fn response_code(response: &ServiceResponse) -> &'static str {
    if let Some(error) = response.response().error() {
        if let Some(api_error) = error.as_error::<ApiError>() {
            return api_error.code.as_str();
        }
    }
    if let Some(ResponseCode(code)) = response.response().extensions().get::<ResponseCode>() {
        return code;
    }
    let status = response.status();
    if status.is_success() {
        "OK"
    } else {
        ErrorCode::ALL
            .iter()
            .find(|c| c.status() == status)
            .map_or("UPSTREAM_ERROR", |c| c.as_str())
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
