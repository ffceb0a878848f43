//! The HTTP routes, one file per endpoint family.

pub mod fallback;
pub mod health;
pub mod live;
pub mod native;
pub mod openai;
pub mod passthrough;
pub mod proxy;
pub mod stream;
pub mod usage;

use actix_web::web;

/// Registers every route (`/metrics` only when `serve_metrics`, that is when
/// it has no listener of its own).
pub fn configure(cfg: &mut web::ServiceConfig, serve_metrics: bool) {
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
        web::resource(["/ws/{rpc}", "//ws/{rpc}"])
            .route(web::get().to(live::live))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .service(
        web::resource("/usage")
            .route(web::get().to(usage::usage))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .service(
        web::resource("/ready")
            .route(web::get().to(health::ready))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .service(
        web::resource("/{version}/models")
            .route(web::get().to(native::list_models))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .service(
        web::resource("/{version}/models/{name}")
            .route(web::post().to(native::model_call))
            .route(web::get().to(native::get_model))
            .default_service(web::to(fallback::method_not_allowed("GET, POST"))),
    )
    .service(
        web::resource("/{version}/tunedModels/{name}")
            .route(web::post().to(native::tuned_model_call))
            .default_service(web::to(fallback::method_not_allowed("POST"))),
    )
    .service(
        web::resource("/{version}/openai/chat/completions")
            .route(web::post().to(openai::chat_completions))
            .default_service(web::to(fallback::method_not_allowed("POST"))),
    )
    .service(
        web::resource("/{version}/openai/embeddings")
            .route(web::post().to(openai::embeddings))
            .default_service(web::to(fallback::method_not_allowed("POST"))),
    )
    .service(
        web::resource("/{version}/openai/models")
            .route(web::get().to(openai::models))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .default_service(web::to(fallback::not_found));
    if serve_metrics {
        cfg.service(
            web::resource("/metrics")
                .route(web::get().to(health::metrics_route))
                .default_service(web::to(fallback::method_not_allowed("GET"))),
        );
    }
}
