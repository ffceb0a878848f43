//! Files, cached contents, batches and interactions (docs/api.md#files-caches-batches-and-interactions): the calls that
//! name a resource a client made, each sent with the key that made it and
//! only for that client (see `owned`), and the lists, which show a client
//! its own resources only (see `listing`).

use super::owned::{self, id_from_path};
use super::passthrough::{self, version, Resources, Target};
use crate::auth::Surface;
use crate::errors::{ApiError, ErrorCode};
use crate::model_id::ModelId;
use crate::ownership::Kind;
use crate::state::AppState;
use crate::upstream::stream_reader::Framing;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

/// Query parameters of §7's routes that go upstream (never `key`).
const QUERY: &[&str] = &[
    "alt",
    "pageSize",
    "pageToken",
    "stream",
    "last_event_id",
    "include_input",
    "updateMask",
];

/// `GET /{version}/files`
pub async fn list_files(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::listing::list(&req, &state, version(&path)?, Kind::File).await
}

/// `GET /{version}/cachedContents`
pub async fn list_caches(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::listing::list(&req, &state, version(&path)?, Kind::CachedContent).await
}

/// `GET /{version}/batches`
pub async fn list_batches(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::listing::list(&req, &state, version(&path)?, Kind::Batch).await
}

/// `GET|DELETE /{version}/files/{id}` and `GET /{version}/files/{id}:download`.
pub async fn file(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_version, name) = path.into_inner();
    let version = version(&raw_version)?;
    match name.strip_suffix(":download") {
        Some(id) if req.method() == Method::GET => download(&req, &state, version, id).await,
        Some(_) => Err(method_not_allowed()),
        None => named_call(&req, &state, version, Kind::File, &name, "", None).await,
    }
}

/// `GET /download/{version}/files/{id}:download`
pub async fn download_route(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_version, name) = path.into_inner();
    let version = version(&raw_version)?;
    let Some(id) = name.strip_suffix(":download") else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "download paths end in `:download`",
        ));
    };
    download(&req, &state, version, id).await
}

/// A file's bytes, streamed as Gemini sends them (`alt=media`).
async fn download(
    req: &HttpRequest,
    state: &AppState,
    version: &str,
    raw_id: &str,
) -> Result<HttpResponse, ApiError> {
    let (admission, own_key) = passthrough::admit(req, state, Surface::Gemini).await?;
    let id = id_from_path(Kind::File, raw_id)?;
    let target = Target {
        surface: Surface::Gemini,
        method: Method::GET,
        path: format!("/download/{version}/files/{id}:download"),
        query: media_query(req.query_string())?,
        model: None,
        framing: Framing::Events,
        counts_tokens: false,
        resources: Resources {
            named: Some((Kind::File, id)),
            ..Resources::default()
        },
    };
    passthrough::forward(req, state, &admission, own_key, target, Bytes::new()).await
}

/// A download asks for the bytes: `alt=media` is the only query it takes.
fn media_query(raw: &str) -> Result<passthrough::Query, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the query string is malformed"))?;
    match pairs.iter().find(|(name, _)| name == "alt") {
        Some((_, value)) if value != "media" => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "a download takes `alt=media`",
        )),
        _ => Ok(passthrough::Query {
            alt: None,
            encoded: "alt=media".to_owned(),
        }),
    }
}

/// `POST /{version}/cachedContents`: the cache's model passes the allow-list.
pub async fn create_cache(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let version = version(&path)?;
    let (admission, own_key) = passthrough::admit(&req, &state, Surface::Gemini).await?;
    let body = passthrough::body(&req, payload, &state).await?;
    let fields: ModelField = read_fields(&body)?;
    // Gemini needs it too; without one the allow-list would have nothing to check.
    let Some(model) = fields.model else {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "a cached content names its `model`",
        ));
    };
    let model = Some(parse_model(&model)?);
    let target = Target {
        surface: Surface::Gemini,
        method: Method::POST,
        path: format!("/{version}/cachedContents"),
        query: query(&req)?,
        model,
        framing: Framing::Unary,
        counts_tokens: false,
        resources: Resources {
            creates: Some(Kind::CachedContent),
            ..Resources::default()
        },
    };
    passthrough::forward(&req, &state, &admission, own_key, target, body).await
}

/// `GET|PATCH|DELETE /{version}/cachedContents/{id}`; a patched TTL moves
/// the record's expiry with it.
pub async fn cache(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_version, id) = path.into_inner();
    let version = version(&raw_version)?;
    let body = (req.method() == Method::PATCH).then_some(payload);
    named_call(&req, &state, version, Kind::CachedContent, &id, "", body).await
}

/// `GET|DELETE /{version}/batches/{id}` and `POST /{version}/batches/{id}:cancel`.
pub async fn batch(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_version, name) = path.into_inner();
    let version = version(&raw_version)?;
    let (id, verb) = match name.split_once(':') {
        Some((id, "cancel")) if req.method() == Method::POST => (id, ":cancel"),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "the service passes `:cancel` through, no other batch method",
            ))
        }
        None if req.method() == Method::POST => return Err(method_not_allowed()),
        None => (name.as_str(), ""),
    };
    named_call(&req, &state, version, Kind::Batch, id, verb, None).await
}

/// `GET|DELETE /{version}/interactions/{id}` (a GET may stream, resumed from
/// `last_event_id`).
pub async fn interaction(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_version, id) = path.into_inner();
    let version = version(&raw_version)?;
    named_call(&req, &state, version, Kind::Interaction, &id, "", None).await
}

/// `POST /{version}/interactions/{id}/cancel`
pub async fn cancel_interaction(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_version, id) = path.into_inner();
    let version = version(&raw_version)?;
    named_call(
        &req,
        &state,
        version,
        Kind::Interaction,
        &id,
        "/cancel",
        None,
    )
    .await
}

/// A call on one resource named in the path: sent with the key that made
/// it, for the client that made it only.
async fn named_call(
    req: &HttpRequest,
    state: &AppState,
    version: &str,
    kind: Kind,
    raw_id: &str,
    verb: &str,
    payload: Option<web::Payload>,
) -> Result<HttpResponse, ApiError> {
    let (admission, own_key) = passthrough::admit(req, state, Surface::Gemini).await?;
    let id = id_from_path(kind, raw_id)?;
    // Read only once the client is known.
    let body = match payload {
        Some(payload) => passthrough::body(req, payload, state).await?,
        None => Bytes::new(),
    };
    let query = query(req)?;
    let streamed = kind == Kind::Interaction && query.encoded.contains("stream=true");
    let ownership = &state.upstream.context().ownership;
    // A poll that may see a background run end, which charges its tokens.
    let pending = (kind == Kind::Interaction && req.method() == Method::GET)
        .then(|| ownership.background().pending(&id))
        .flatten();
    let poll = pending.is_some() && !streamed;
    // A streamed read of a run still to charge carries its usage in its
    // `interaction.completed` event: that read charges it, and no later one.
    let streamed_charge = pending.is_some() && streamed && ownership.background().ended(&id);
    // The run's model, so its tokens count where its create's would have.
    let model = pending.and_then(|model| ModelId::parse(&model).ok());
    let target = Target {
        surface: Surface::Gemini,
        method: req.method().clone(),
        path: format!("/{version}/{}/{id}{verb}", owned::collection(kind)),
        query,
        model,
        framing: if streamed {
            Framing::Events
        } else {
            Framing::Unary
        },
        counts_tokens: streamed_charge,
        resources: Resources {
            named: Some((kind, id.clone())),
            route_charges: poll,
            ..Resources::default()
        },
    };
    let patched = req.method() == Method::PATCH;
    let polled_batch = kind == Kind::Batch && req.method() == Method::GET;
    let called = passthrough::call(req, state, &admission, own_key, target, body).await?;
    let (reply, owner) = (called.reply, called.owner);
    let answer = match (&reply.body, reply.status.is_success()) {
        (crate::upstream::ReplyBody::Full(answer), true) => {
            serde_json::from_slice::<serde_json::Value>(answer).ok()
        }
        _ => None,
    };
    if let (Some(value), Some(charge)) = (&answer, called.charge) {
        charge_ended_run(state, &admission.client.name, &id, value, charge);
    }
    if let (true, Some(owner)) = (polled_batch && reply.status.is_success(), &owner) {
        owned::record_batch_output(state, owner, &reply).await;
        // A batch lives as long as it is being polled, and 48 h after.
        ownership
            .extend(kind, &id, owned::default_ttl(Kind::Batch))
            .await;
    }
    if let (true, Some(_), Some(value)) = (patched, &owner, &answer) {
        if let Some(ttl) = owned::expiry(value) {
            ownership.extend(kind, &id, ttl).await;
        }
    }
    Ok(passthrough::respond(req, reply))
}

/// `POST /{version}/interactions`: the model or agent passes the allow-list;
/// `previous_interaction_id` continues only this client's conversation, on
/// the key that holds it; tokens reported in `usage` are counted and charged.
pub async fn create_interaction(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let version = version(&path)?;
    let (admission, own_key) = passthrough::admit(&req, &state, Surface::Gemini).await?;
    let body = passthrough::body(&req, payload, &state).await?;
    let fields: InteractionFields = read_fields(&body)?;
    // An agent passes the allow-list like a model; both, when both are given.
    if let (Some(_), Some(agent)) = (&fields.model, &fields.agent) {
        let agent = parse_model(agent)?;
        admission
            .client
            .authorize(None, Some(&agent.display_id()))?;
    }
    let model = match fields.model.or(fields.agent) {
        Some(model) => Some(parse_model(&model)?),
        None => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "an interaction names a `model` or an `agent`",
            ))
        }
    };
    let target_model = model.as_ref().map(ModelId::display_id);
    let stream = fields.stream == Some(true);
    let stored = fields.store != Some(false);
    let target = Target {
        surface: Surface::Gemini,
        method: Method::POST,
        path: format!("/{version}/interactions"),
        query: query(&req)?,
        model,
        framing: if stream {
            Framing::Events
        } else {
            Framing::Unary
        },
        counts_tokens: true,
        resources: Resources {
            creates: stored.then_some(Kind::Interaction),
            ..Resources::default()
        },
    };
    let passthrough::Called { reply, owner, .. } =
        passthrough::call(&req, &state, &admission, own_key, target, body).await?;
    if let (true, false, true) = (
        fields.background == Some(true),
        stream,
        reply.status.is_success(),
    ) {
        if let crate::upstream::ReplyBody::Full(answer) = &reply.body {
            if let Some(id) = serde_json::from_slice(answer)
                .ok()
                .and_then(|v: serde_json::Value| owned::created_id(Kind::Interaction, &v))
            {
                let model = target_model.as_deref().unwrap_or_default();
                state
                    .upstream
                    .context()
                    .ownership
                    .background()
                    .started(&id, model);
            }
        }
    }
    match (stream && stored, owner) {
        (true, Some(owner)) if reply.status.is_success() => Ok(super::sniff::respond_recording(
            &req,
            state.into_inner(),
            reply,
            owner,
        )),
        _ => Ok(passthrough::respond(&req, reply)),
    }
}

#[derive(serde::Deserialize, Default)]
struct ModelField {
    model: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct InteractionFields {
    model: Option<String>,
    agent: Option<String>,
    stream: Option<bool>,
    store: Option<bool>,
    background: Option<bool>,
}

/// Statuses after which a background run reports no more tokens.
const ENDED: &[&str] = &[
    "completed",
    "failed",
    "cancelled",
    "incomplete",
    "budget_exceeded",
    "requires_action",
];

/// Charges a background run's tokens on the first poll that sees it ended:
/// its create answered before any were spent.
fn charge_ended_run(
    state: &AppState,
    client: &std::sync::Arc<str>,
    id: &str,
    answer: &serde_json::Value,
    charge: crate::quota::Charge,
) {
    let ended = answer
        .get("status")
        .and_then(|s| s.as_str())
        .is_some_and(|status| ENDED.contains(&status));
    if !ended || !state.upstream.context().ownership.background().ended(id) {
        return;
    }
    let tokens = answer
        .get("usage")
        .and_then(|usage| serde_json::to_vec(usage).ok())
        .and_then(|usage| crate::upstream::usage::Tokens::from_usage(false, &usage));
    if let Some(tokens) = tokens {
        let metrics = &state.upstream.context().metrics;
        let model = answer
            .get("model")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        let model = model.strip_prefix("models/").unwrap_or(model);
        metrics.count_tokens(client, &metrics.model_label(model), tokens);
        charge.tokens(tokens.total);
    }
}

fn read_fields<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body is not a JSON object with the expected fields",
        )
    })
}

/// `models/gemini-2.5-flash` or `gemini-2.5-flash` (or an agent's id).
fn parse_model(raw: &str) -> Result<ModelId, ApiError> {
    ModelId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidModel, e.to_string()))
}

fn query(req: &HttpRequest) -> Result<passthrough::Query, ApiError> {
    passthrough::query_with(req.query_string(), QUERY)
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this method is not allowed on this path",
    )
}
