//! `GET /health` (the process is up and serving; never calls Gemini) and
//! `GET /metrics` (the Prometheus exposition, unauthenticated like actix-web-prom's).

use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
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

/// Every metric family, including those with no series yet.
pub async fn metrics_route(state: web::Data<AppState>) -> HttpResponse {
    // Rests that ended since the last change leave the key gauges now.
    state.upstream.context().keys.publish();
    match state.metrics.exposition() {
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
