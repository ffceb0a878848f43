//! Folds non-standard HTTP methods into `OTHER` before metrics see them, so a
//! client inventing methods cannot create new `method` label values.
//!
//! A service of its own rather than `from_fn`: `from_fn` boxes the future of
//! every middleware inside it, and this one is outermost, so every request
//! (and every call in flight) would hold one more allocation for nothing.

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::Method;
use actix_web::Error;
use std::future::{ready, Ready};

const STANDARD: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::PATCH,
    Method::TRACE,
];

/// The middleware; `wrap` it outside the metrics.
pub struct FoldUnknownMethods;

impl<S, B> Transform<S, ServiceRequest> for FoldUnknownMethods
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = Folding<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(Folding { service }))
    }
}

pub struct Folding<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for Folding<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = S::Future;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        if !STANDARD.contains(req.method()) {
            if let Ok(other) = Method::from_bytes(b"OTHER") {
                req.head_mut().method = other;
            }
        }
        self.service.call(req)
    }
}
