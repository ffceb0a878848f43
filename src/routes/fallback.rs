//! Answers for unknown routes and wrong methods, in the error shape of the
//! path like every error.

use crate::errors::{ApiError, ErrorCode};
use crate::request_log::RequestLog;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    RequestLog::update(&req, |log| log.api = true);
    Err(ApiError::new(ErrorCode::NotFound, "there is no such route"))
}

/// For a route that exists under another method; `allow` lists the methods it takes.
pub fn method_not_allowed(
    allow: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<HttpResponse> + Clone {
    move |req: HttpRequest| {
        RequestLog::update(&req, |log| log.api = true);
        let mut response = HttpResponse::from_error(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("this route accepts {allow} only"),
        ));
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        std::future::ready(response)
    }
}
