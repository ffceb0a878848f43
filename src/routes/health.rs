//! `GET /health`: the process is up and serving; never calls Gemini.

use actix_web::HttpResponse;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Placeholder so `/metrics` is a known route; actix-web-prom writes the body.
pub async fn metrics_route() -> HttpResponse {
    HttpResponse::Ok().finish()
}
