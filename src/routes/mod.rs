//! The HTTP routes, one file per endpoint family.

pub mod fallback;
pub mod health;
pub mod proxy;

use actix_web::web;

/// Registers every route; shared by the binary and the tests through `startup`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/gemini-proxy")
            .route(web::post().to(proxy::gemini_proxy))
            .default_service(web::to(fallback::method_not_allowed("POST"))),
    )
    .service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(health::metrics_route))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .default_service(web::to(fallback::not_found));
}
