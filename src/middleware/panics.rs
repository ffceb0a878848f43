//! A panic in a handler is a bug, but it must still cost only its own request:
//! the panic is caught and the client answered `INTERNAL_ERROR`, and the log
//! says where it happened without the panic's message (which could quote data
//! a request carried).

use crate::errors::{ApiError, ErrorCode};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::Error;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;

pub async fn catch_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // The request is not used after a panic, so no broken invariant can be observed.
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            log::error!("a request handler panicked; the request was answered INTERNAL_ERROR");
            Err(ApiError::new(
                ErrorCode::InternalError,
                "the service failed to handle this request",
            )
            .into())
        }
    }
}

/// Replaces the default panic hook, which prints the panic's message, with one
/// that logs only where the panic happened.
pub fn install_quiet_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".to_owned());
        log::error!("panic at {location} (message withheld: it may quote request data)");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::observe::observe;
    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App, HttpResponse};

    async fn boom() -> HttpResponse {
        panic!("a bug with AIzaSECRET in its message")
    }

    #[actix_web::test]
    async fn a_panicking_handler_is_answered_internal_error_in_the_routes_shape() {
        let app = test::init_service(
            App::new()
                .route("/gemini-proxy", web::post().to(boom))
                .route("/v1beta/models", web::get().to(boom))
                .wrap(from_fn(catch_panics))
                .wrap(from_fn(observe)),
        )
        .await;
        let request = test::TestRequest::post().uri("/gemini-proxy").to_request();
        let response = test::try_call_service(&app, request).await;
        let response = match response {
            Ok(response) => response.map_into_boxed_body(),
            Err(error) => test::TestRequest::default().to_srv_response(error.error_response()),
        };
        assert_eq!(response.status(), 500);
        let body = test::read_body(response).await;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["errors"][0]["code"], "INTERNAL_ERROR");
        assert!(!String::from_utf8_lossy(&body).contains("SECRET"));

        let request = test::TestRequest::get().uri("/v1beta/models").to_request();
        let error = test::try_call_service(&app, request)
            .await
            .expect_err("an error");
        let body =
            test::read_body(test::TestRequest::default().to_srv_response(error.error_response()))
                .await;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"]["status"], "INTERNAL");
        assert_eq!(value["error"]["details"][0]["reason"], "INTERNAL_ERROR");
    }
}
