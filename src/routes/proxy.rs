//! `POST /gemini-proxy`: the simple endpoint of SPEC §2.

use crate::auth;
use crate::errors::{ApiError, ErrorCode};
use crate::proxy_request::{ProxyRequest, Target};
use crate::request_log::RequestLog;
use crate::startup::AppState;
use crate::upstream::gemini::generate_body;
use crate::upstream::{Credential, GenerateCall};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;
use std::time::{Duration, Instant};

/// A client that stops sending its body for this long is answered and dropped.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize)]
struct Success<'a> {
    result: &'static str,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    response: &'a str,
    model: &'a str,
    time: u64,
    usage: Usage,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    response_tokens: u64,
    total_tokens: u64,
}

pub async fn gemini_proxy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let key = auth::client_key(&req, auth::CLIENT_KEY_HEADER);
    let admission = auth::admit(&req, &state, key).await?;
    require_json(&req)?;
    let body = read_body(&req, payload, state.limits.max_body_bytes).await?;
    let request = ProxyRequest::parse(&body, state.limits.max_prompt_chars)?;

    let client = &admission.client;
    let (model, credential) = match &request.target {
        Target::ServerDefault => (state.limits.default_model.clone(), Credential::Server),
        Target::Own { model, api_key } => {
            if !client.allow_own_key {
                return Err(ApiError::new(
                    ErrorCode::OwnKeyNotAllowed,
                    "this client may not send its own Gemini key",
                ));
            }
            let mut key = HeaderValue::from_str(api_key).map_err(|_| {
                ApiError::new(ErrorCode::InvalidRequest, "`api_key` is not a valid key")
            })?;
            key.set_sensitive(true);
            (model.clone(), Credential::Client(key))
        }
    };
    let model_id = model.display_id();
    RequestLog::update(&req, |log| log.model = Some(model_id.clone()));
    if !client.may_use_model(&model_id) {
        return Err(ApiError::new(
            ErrorCode::ModelNotAllowed,
            format!("this client may not use the model `{model_id}`"),
        ));
    }

    let upstream_body = generate_body(
        &request.prompt,
        request.system_instruction.as_deref(),
        request.generation_config,
    );
    let outcome = state
        .upstream
        .generate(GenerateCall {
            model,
            credential,
            body: Bytes::from(upstream_body),
            deadline: started + state.limits.upstream_timeout,
        })
        .await;
    RequestLog::update(&req, |log| log.attempts = outcome.attempts);
    let answer = outcome.result?;

    let usage = answer.usage;
    state.metrics.count_tokens(
        &client.name,
        &outcome.model_label,
        usage.prompt_token_count,
        usage.candidates_token_count,
        usage.thoughts_token_count,
    );
    RequestLog::update(&req, |log| log.tokens = usage.total_token_count);
    let body = Success {
        result: "OK",
        data: Data {
            response: &answer.text,
            model: &model_id,
            time: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            usage: Usage {
                prompt_tokens: usage.prompt_token_count,
                response_tokens: usage.candidates_token_count,
                total_tokens: usage.total_token_count,
            },
            finish_reason: &answer.finish_reason,
        },
    };
    Ok(HttpResponse::Ok().json(body))
}

/// JSON only: `application/json`, with or without parameters such as charset.
fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be sent as Content-Type: application/json",
        ))
    }
}

/// Reads the body up to `limit` bytes: a declared length over it is refused
/// before reading, a chunked body as soon as it passes it.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the request body could not be read",
                )
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "the request body was not received in time",
            )
        })??;
    Ok(body.freeze())
}
