//! Answers for unknown routes and wrong methods, in the envelope like every error.

use crate::errors::{ApiError, ErrorCode, Shape};
use crate::request_log::RequestLog;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    RequestLog::update(&req, |log| log.api = true);
    ApiError::new(ErrorCode::NotFound, "there is no such route")
        .in_shape(Shape::for_path(req.path()))
        .error_response()
}

/// For a route that exists under another method; `allow` lists the methods it takes.
pub fn method_not_allowed(
    allow: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<HttpResponse> + Clone {
    move |req: HttpRequest| {
        RequestLog::update(&req, |log| log.api = true);
        let mut response = ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("this route accepts {allow} only"),
        )
        .in_shape(Shape::for_path(req.path()))
        .error_response();
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        std::future::ready(response)
    }
}
