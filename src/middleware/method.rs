//! Folds non-standard HTTP methods into `OTHER` before metrics see them, so a
//! client inventing methods cannot create new `method` label values.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::Error;

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

pub async fn fold_unknown_methods(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if !STANDARD.contains(req.method()) {
        if let Ok(other) = Method::from_bytes(b"OTHER") {
            req.head_mut().method = other;
        }
    }
    next.call(req).await
}
