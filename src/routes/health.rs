//! `GET /health` (liveness: the process is up and serving; never calls
//! Gemini), `GET /ready` (readiness: 503 while starting and once draining) and
//! `GET /metrics` (the Prometheus exposition, on the public port unless
//! `METRICS_ADDR` gives it a listener of its own).

use crate::errors::{ApiError, ErrorCode, ResponseCode};
use crate::metrics::Metrics;
use crate::state::{AppState, Phase};
use crate::upstream::key_pool::KeyPool;
use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::{web, HttpResponse, ResponseError};

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// The access-log code of a `/ready` that says no: not an error of the
/// request, so not one of the error codes.
const NOT_READY: &str = "NOT_READY";

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let status = match state.readiness.phase() {
        Phase::Ready => return HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Phase::Starting => "starting",
        Phase::Draining => "draining",
    };
    let mut response =
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": status}));
    response.extensions_mut().insert(ResponseCode(NOT_READY));
    response
}

/// Every metric family, including those with no series yet.
pub async fn metrics_route(state: web::Data<AppState>) -> HttpResponse {
    exposition(&state.metrics, &state.upstream.context().keys)
}

/// The exposition as a response, for either listener.
pub fn exposition(metrics: &Metrics, keys: &KeyPool) -> HttpResponse {
    // Rests that ended since the last change leave the key gauges now.
    keys.publish();
    match metrics.exposition() {
        Ok(text) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT)))
            .body(text),
        Err(error) => {
            log::error!("cannot encode the metrics: {error}");
            ApiError::new(ErrorCode::InternalError, "the metrics could not be encoded")
                .error_response()
        }
    }
}
