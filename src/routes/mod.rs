//! The HTTP routes, one file per endpoint family.

pub mod fallback;
pub mod health;
pub mod listing;
pub mod live;
pub mod native;
pub mod openai;
pub mod owned;
pub mod passthrough;
pub mod proxy;
pub mod resources;
pub mod sniff;
pub mod stream;
pub mod upload;
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
        web::resource("/upload/{version}/files")
            .route(web::post().to(upload::upload))
            .default_service(web::to(fallback::method_not_allowed("POST"))),
    )
    .service(
        web::resource("/download/{version}/files/{name}")
            .route(web::get().to(resources::download_route))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .service(
        web::resource("/{version}/files")
            .route(web::get().to(resources::list_files))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .service(
        web::resource("/{version}/files/{name}")
            .route(web::get().to(resources::file))
            .route(web::delete().to(resources::file))
            .default_service(web::to(fallback::method_not_allowed("GET, DELETE"))),
    )
    .service(
        web::resource("/{version}/cachedContents")
            .route(web::post().to(resources::create_cache))
            .route(web::get().to(resources::list_caches))
            .default_service(web::to(fallback::method_not_allowed("GET, POST"))),
    )
    .service(
        web::resource("/{version}/cachedContents/{id}")
            .route(web::get().to(resources::cache))
            .route(web::patch().to(resources::cache))
            .route(web::delete().to(resources::cache))
            .default_service(web::to(fallback::method_not_allowed("GET, PATCH, DELETE"))),
    )
    .service(
        web::resource("/{version}/batches")
            .route(web::get().to(resources::list_batches))
            .default_service(web::to(fallback::method_not_allowed("GET"))),
    )
    .service(
        web::resource("/{version}/batches/{name}")
            .route(web::get().to(resources::batch))
            .route(web::post().to(resources::batch))
            .route(web::delete().to(resources::batch))
            .default_service(web::to(fallback::method_not_allowed("GET, POST, DELETE"))),
    )
    .service(
        web::resource("/{version}/interactions")
            .route(web::post().to(resources::create_interaction))
            .default_service(web::to(fallback::method_not_allowed("POST"))),
    )
    .service(
        web::resource("/{version}/interactions/{id}")
            .route(web::get().to(resources::interaction))
            .route(web::delete().to(resources::interaction))
            .default_service(web::to(fallback::method_not_allowed("GET, DELETE"))),
    )
    .service(
        web::resource("/{version}/interactions/{id}/cancel")
            .route(web::post().to(resources::cancel_interaction))
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
