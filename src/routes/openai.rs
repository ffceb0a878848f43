//! The OpenAI-compatible paths Gemini offers, for the `openai` SDKs.

use super::passthrough::{self, version, Target};
use crate::auth::Surface;
use crate::errors::{ApiError, ErrorCode};
use crate::model_id::ModelId;
use crate::state::AppState;
use crate::upstream::stream_reader::Framing;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// The fields of an OpenAI request body the service needs; the rest is passed on untouched.
#[derive(Deserialize)]
struct BodyFields {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

/// `POST /{version}/openai/chat/completions`
pub async fn chat_completions(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    post(req, path.into_inner(), payload, state, "chat/completions").await
}

/// `POST /{version}/openai/embeddings`
pub async fn embeddings(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    post(req, path.into_inner(), payload, state, "embeddings").await
}

async fn post(
    req: HttpRequest,
    raw_version: String,
    payload: web::Payload,
    state: web::Data<AppState>,
    endpoint: &str,
) -> Result<HttpResponse, ApiError> {
    let version = version(&raw_version)?;
    let (admission, own_key) = passthrough::admit(&req, &state, Surface::OpenAi).await?;
    // `alt` and paging are Gemini's, not OpenAI's: nothing in the query goes
    // upstream here, so no `alt=sse` turns a counted answer into an uncounted one.
    let query = passthrough::Query::default();
    let body = passthrough::body(&req, payload, &state).await?;
    let fields: BodyFields = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidJson,
            "the request body must be a JSON object",
        )
    })?;
    let raw_model = fields
        .model
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "`model` is required"))?;
    let model = ModelId::parse(&raw_model)
        .map_err(|e| ApiError::new(ErrorCode::InvalidModel, e.to_string()))?;
    let stream = fields.stream == Some(true) && endpoint == "chat/completions";
    let target = Target {
        surface: Surface::OpenAi,
        method: Method::POST,
        path: format!("/{version}/openai/{endpoint}"),
        query,
        model: Some(model),
        framing: if stream {
            Framing::OpenAiSse
        } else {
            Framing::Unary
        },
        // Chat answers report `usage`, streamed in the last chunk; embeddings
        // report the prompt's.
        counts_tokens: true,
        resources: Default::default(),
    };
    passthrough::forward(&req, &state, &admission, own_key, target, body).await
}

/// `GET /{version}/openai/models`
pub async fn models(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let path = format!("/{}/openai/models", version(&path)?);
    passthrough::forward_get(&req, &state, Surface::OpenAi, Ok(path)).await
}
