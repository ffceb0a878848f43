//! The one function that assembles the `App`: every worker's state, the
//! middleware order and the routes. The binary and every in-process test
//! serve exactly this.

use crate::metrics::Metrics;
use crate::middleware::{method, observe, panics};
use crate::routes;
use crate::settings::CorsOrigins;
use crate::state::AppState;
use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{http, web, App, Error};

/// What shapes the app besides its state.
#[derive(Clone, Debug)]
pub struct AppOptions {
    pub cors: CorsOrigins,
    /// Serve `/metrics` here (false when `METRICS_ADDR` gives it a listener of its own).
    pub serve_metrics: bool,
}

/// The app one HTTP worker serves. Middleware runs outermost first: unknown
/// methods are folded (so metrics never see an unbounded method), the HTTP
/// metrics, the observer (request id, error shapes, access line), CORS, and
/// the panic catcher right around the handlers.
pub fn create_app(
    state: web::Data<AppState>,
    metrics: &Metrics,
    options: &AppOptions,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    let serve_metrics = options.serve_metrics;
    App::new()
        .app_data(state)
        .configure(|cfg| routes::configure(cfg, serve_metrics))
        .wrap(from_fn(panics::catch_panics))
        .wrap(cors_middleware(&options.cors))
        .wrap(from_fn(observe::observe))
        .wrap(metrics.http_middleware())
        .wrap(method::FoldUnknownMethods)
}

fn cors_middleware(origins: &CorsOrigins) -> Cors {
    let base = Cors::default()
        .allowed_methods([http::Method::GET, http::Method::POST])
        .allowed_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            http::header::HeaderName::from_static("x-api-key"),
            http::header::HeaderName::from_static("x-goog-api-key"),
            http::header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            http::header::RETRY_AFTER,
            http::header::HeaderName::from_static("x-request-id"),
            http::header::HeaderName::from_static("ratelimit-limit"),
            http::header::HeaderName::from_static("ratelimit-remaining"),
            http::header::HeaderName::from_static("ratelimit-reset"),
            http::header::HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(3600);
    match origins {
        CorsOrigins::None => base,
        // Any origin, never with credentials (actix-cors sends `*` only without them).
        CorsOrigins::Any => base.send_wildcard().allow_any_origin(),
        CorsOrigins::List(list) => list
            .iter()
            .fold(base, |cors, origin| cors.allowed_origin(origin)),
    }
}
