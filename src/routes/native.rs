//! Gemini's native REST paths, so the official SDKs work by pointing their
//! base URL at the service.

use super::passthrough::{self, version, Alt, Target};
use crate::auth::Surface;
use crate::errors::{ApiError, ErrorCode};
use crate::model_id::{Collection, ModelId};
use crate::state::AppState;
use crate::upstream::stream_reader::Framing;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

/// The model methods the service passes through.
const METHODS: &[&str] = &[
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
    // Batches: created in the key's project, owned by the client (routes/owned.rs).
    "batchGenerateContent",
    "asyncBatchEmbedContent",
];

/// `POST /{version}/models/{model}:{method}`
pub async fn model_call(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    call(req, path.into_inner(), payload, state, Collection::Models).await
}

/// `POST /{version}/tunedModels/{model}:{method}`
pub async fn tuned_model_call(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    call(
        req,
        path.into_inner(),
        payload,
        state,
        Collection::TunedModels,
    )
    .await
}

async fn call(
    req: HttpRequest,
    (raw_version, name): (String, String),
    payload: web::Payload,
    state: web::Data<AppState>,
    collection: Collection,
) -> Result<HttpResponse, ApiError> {
    let version = version(&raw_version)?;
    let (admission, own_key) = passthrough::admit(&req, &state, Surface::Gemini).await?;
    let (model, method) = model_and_method(&name, collection)?;
    let query = passthrough::query(req.query_string())?;
    let framing = match (method, query.alt) {
        ("streamGenerateContent", Some(Alt::Sse)) => Framing::GeminiSse,
        ("streamGenerateContent", _) => Framing::GeminiJsonArray,
        // A unary method is read whole; if Gemini answers it as events, the
        // exchange reads their tokens (by the answer's content type).
        _ => Framing::Unary,
    };
    let body = passthrough::body(&req, payload, &state).await?;
    let target = Target {
        surface: Surface::Gemini,
        method: Method::POST,
        path: format!("/{version}/{}:{method}", model.resource()),
        query,
        model: Some(model),
        framing,
        counts_tokens: matches!(method, "generateContent" | "streamGenerateContent"),
        resources: super::passthrough::Resources {
            creates: matches!(method, "batchGenerateContent" | "asyncBatchEmbedContent")
                .then_some(crate::ownership::Kind::Batch),
            ..Default::default()
        },
    };
    passthrough::forward(&req, &state, &admission, own_key, target, body).await
}

/// `GET /{version}/models`
pub async fn list_models(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let path = format!("/{}/models", version(&path)?);
    passthrough::forward_get(&req, &state, Surface::Gemini, Ok(path)).await
}

/// `GET /{version}/models/{model}`; reading a model's description uses no
/// model, so no allow-list applies. Only `models/…` are served here: nothing
/// in the path can reach another collection.
pub async fn get_model(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_version, name) = path.into_inner();
    let version = version(&raw_version)?;
    let path = ModelId::parse(&name)
        .map_err(|e| ApiError::new(ErrorCode::InvalidModel, e.to_string()))
        .and_then(|model| match model.collection() {
            Collection::Models => Ok(format!("/{version}/{}", model.resource())),
            Collection::TunedModels => Err(ApiError::new(
                ErrorCode::InvalidModel,
                "this route describes `models/…` only",
            )),
        });
    passthrough::forward_get(&req, &state, Surface::Gemini, path).await
}

/// Splits `gemini-2.5-flash:generateContent` and checks both halves.
fn model_and_method(
    name: &str,
    collection: Collection,
) -> Result<(ModelId, &'static str), ApiError> {
    let Some((id, method)) = name.rsplit_once(':') else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the path names no method (`model:method`)",
        ));
    };
    let method = METHODS.iter().find(|m| **m == method).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "the service does not pass this method through",
        )
    })?;
    let prefixed = match collection {
        Collection::Models => id.to_owned(),
        Collection::TunedModels => format!("tunedModels/{id}"),
    };
    let model = ModelId::parse(&prefixed)
        .map_err(|e| ApiError::new(ErrorCode::InvalidModel, e.to_string()))?;
    if model.collection() != collection || id.starts_with("models/") {
        return Err(ApiError::new(
            ErrorCode::InvalidModel,
            "the model id is not valid here",
        ));
    }
    Ok((model, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_model_and_its_method() {
        let (model, method) =
            model_and_method("gemini-2.5-flash:streamGenerateContent", Collection::Models).unwrap();
        assert_eq!(
            (model.name(), method),
            ("gemini-2.5-flash", "streamGenerateContent")
        );
        let (tuned, _) =
            model_and_method("my-model:generateContent", Collection::TunedModels).unwrap();
        assert_eq!(tuned.resource(), "tunedModels/my-model");
        for (name, why) in [
            ("gemini-2.5-flash", "no method"),
            (
                "gemini-2.5-flash:deleteEverything",
                "a method not passed through",
            ),
            ("../x:generateContent", "a path in the id"),
            ("a:b:generateContent", "a colon in the id"),
        ] {
            assert!(model_and_method(name, Collection::Models).is_err(), "{why}");
        }
    }
}
