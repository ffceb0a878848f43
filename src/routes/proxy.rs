//! `POST /gemini-proxy`: the simple endpoint. It builds a generateContent
//! body, makes one unary call through the upstream pipeline, and reads the
//! answer into the envelope.

use crate::auth;
use crate::errors::{ApiError, ErrorCode};
use crate::keys::Admission;
use crate::proxy_request::{ProxyRequest, Target};
use crate::request_log::RequestLog;
use crate::state::AppState;
use crate::upstream::gemini::generate_body;
use crate::upstream::pipeline::failure_error;
use crate::upstream::stream_reader::Framing;
use crate::upstream::{Credential, Expect, KeyStyle, UpstreamCall};
use actix_web::http::header;
use actix_web::http::Method;
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
    let admission = auth::admit(&req, &state, key, true).await?;
    require_json(&req)?;
    let body = read_body(&req, payload, state.limits.max_body_bytes).await?;
    // Described by a function of its own, which takes the admission and the
    // body: nothing of the request's parts stays in this future during the
    // wait for Gemini, and every call in flight holds it.
    let (call, model_id) = describe(&req, &state, admission, body, started)?;
    let outcome = state.upstream.call(call).await;
    RequestLog::update(&req, |log| log.attempts = outcome.attempts);
    let reply = outcome.result?;
    // A request-level failure Gemini answered: its code and (key-free) message.
    if let Some(failure) = reply.failure {
        return Err(failure_error(failure));
    }
    let Some(answer) = reply.answer else {
        return Err(ApiError::new(
            ErrorCode::InternalError,
            "the upstream answer was not read",
        ));
    };
    let usage = answer.usage;
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

/// The call to Gemini a request describes, and the id of its model.
fn describe(
    req: &HttpRequest,
    state: &AppState,
    admission: Admission,
    body: Bytes,
    started: Instant,
) -> Result<(UpstreamCall, String), ApiError> {
    let request = ProxyRequest::parse(&body, state.limits.max_prompt_chars)?;
    let client = &admission.client;
    let (model, own_key) = match &request.target {
        Target::ServerDefault => (state.limits.default_model.clone(), None),
        Target::Own { model, api_key } => (model.clone(), Some(api_key.as_ref())),
    };
    let model_id = model.display_id();
    RequestLog::update(req, |log| log.model = Some(model_id.clone()));
    let credential = Credential::from(client.authorize(own_key, Some(&model_id))?);
    let charge = auth::admit_model(state, &admission, Some(&model_id))?;

    let upstream_body = generate_body(
        &request.prompt,
        request.system_instruction.as_deref(),
        request.generation_config,
    );
    let call = UpstreamCall {
        method: Method::POST,
        path: format!("/v1beta/{}:generateContent", model.resource()),
        query: String::new(),
        credential,
        key_style: KeyStyle::GoogHeader,
        headers: Vec::new(),
        body: Bytes::from(upstream_body),
        framing: Framing::Unary,
        expect: Expect::Answer,
        model: model_id.clone(),
        client: client.name.clone(),
        counts_tokens: true,
        deadline: started + state.limits.upstream_timeout,
        charge,
    };
    Ok((call, model_id))
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
