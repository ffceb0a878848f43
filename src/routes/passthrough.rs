//! What the native Gemini and OpenAI-compatible routes share: authenticate and
//! limit the client like `/gemini-proxy`, describe the call, hand it to the
//! upstream pipeline, and pass Gemini's answer back (streams chunk by chunk).

use super::owned;
use crate::auth::{self, Surface};
use crate::errors::{ApiError, ErrorCode, ResponseCode};
use crate::keys::Admission;
use crate::model_id::ModelId;
use crate::ownership::{Kind, Owner};
use crate::request_log::RequestLog;
use crate::routes::proxy::read_body;
use crate::routes::stream::{RelayedStream, StreamOutcome};
use crate::state::AppState;
use crate::upstream::stream_reader::Framing;
use crate::upstream::{CallOutcome, Credential, Expect, KeyStyle, Reply, ReplyBody, UpstreamCall};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::FutureExt;
use std::future::Future;
use std::time::Instant;

/// Client request headers that may go upstream; everything else (the client's
/// `Authorization`, cookies, hop-by-hop headers, `X-Server-Timeout`,
/// `Accept-Encoding`, `Content-Type` and `Accept`) stays here. Without
/// `Accept-Encoding`, Gemini answers uncompressed, so bodies pass back exactly
/// as they came and streams are never held in a decompressor; without the
/// client's `Content-Type` and `Accept`, bodies go and come as JSON (the
/// upstream exchange sets that).
pub const FORWARDED_HEADERS: &[&str] = &["user-agent", "x-goog-api-client", "accept-language"];
/// Query parameters that may go upstream; `key` never does.
const FORWARDED_QUERY: &[&str] = &["alt", "pageSize", "pageToken"];

/// The API versions the service passes through.
pub const VERSIONS: &[&str] = &["v1", "v1beta", "v1alpha"];

/// A pass-through request, described by the route that received it.
pub struct Target {
    pub surface: Surface,
    pub method: Method,
    /// The upstream path, built from validated parts, without the query.
    pub path: String,
    /// The query to forward, from [`query`].
    pub query: Query,
    /// The model the call uses (checked against the allow-list), if any.
    pub model: Option<ModelId>,
    pub framing: Framing,
    /// Whether Gemini's answer reports tokens worth counting.
    pub counts_tokens: bool,
    /// What the call does with the resources clients own (docs/api.md#files-caches-batches-and-interactions).
    pub resources: Resources,
}

/// The resources a call names in its path, and what its success does to them.
#[derive(Default)]
pub struct Resources {
    /// Named in the path: the call goes out with the key that made it, and
    /// only for the client that did.
    pub named: Option<(Kind, String)>,
    /// Creates one (its name is in Gemini's answer): recorded for this client
    /// and the key that made it.
    pub creates: Option<Kind>,
    /// Client headers that go upstream on this route besides the usual ones.
    pub extra_headers: &'static [&'static str],
    /// A list of one server key's project (routes/listing.rs).
    pub list_key: Option<usize>,
    /// The tokens of this call's answer are charged by the route, not the
    /// pipeline (a poll that may report a background run's end).
    pub route_charges: bool,
}

/// A call's answer, with who it was made for and, when the route charges,
/// the charge to settle.
pub struct Called {
    pub reply: Reply,
    pub owner: Option<Owner>,
    pub charge: Option<crate::quota::Charge>,
}

/// The version segment, or NOT_FOUND.
pub fn version(raw: &str) -> Result<&str, ApiError> {
    VERSIONS
        .iter()
        .find(|v| **v == raw)
        .copied()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "there is no such API version"))
}

/// The response format a request asked for with `alt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alt {
    Sse,
    Json,
}

/// The query parameters that go upstream, read the way Gemini reads them
/// (percent-decoded, so `alt=%73se` is `sse` here as it is there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub alt: Option<Alt>,
    /// Re-encoded from what was read, so Gemini sees what the service checked.
    pub encoded: String,
}

/// Reads the query: only `alt`, `pageSize` and `pageToken` are kept; `alt` is
/// `sse` or `json`, given at most once.
pub fn query(raw: &str) -> Result<Query, ApiError> {
    query_with(raw, FORWARDED_QUERY)
}

/// As [`query`], keeping the parameters in `forwarded`.
pub fn query_with(raw: &str, forwarded: &[&'static str]) -> Result<Query, ApiError> {
    // What the SDKs send on every unary call.
    if raw.is_empty() {
        return Ok(Query::default());
    }
    let invalid = |why: &str| ApiError::new(ErrorCode::InvalidRequest, why.to_owned());
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|_| invalid("the query string is malformed"))?;
    let mut alt = None;
    let mut kept: Vec<(&str, &str)> = Vec::new();
    for (name, value) in &pairs {
        let Some(name) = forwarded.iter().find(|n| **n == name.as_str()) else {
            continue;
        };
        if *name == "alt" {
            if alt.is_some() {
                return Err(invalid("`alt` may be given once"));
            }
            alt = Some(match value.as_str() {
                "sse" => Alt::Sse,
                "json" => Alt::Json,
                _ => return Err(invalid("`alt` must be `sse` or `json`")),
            });
        }
        kept.push((name, value));
    }
    let encoded = serde_urlencoded::to_string(&kept).map_err(|_| invalid("bad query"))?;
    Ok(Query { alt, encoded })
}

/// Authenticates and takes one rate-limit token, before any body is read.
pub async fn admit(
    req: &HttpRequest,
    state: &AppState,
    surface: Surface,
) -> Result<(Admission, Option<String>), ApiError> {
    let keys = auth::sdk_keys(req, surface);
    let admission = auth::admit(req, state, keys.client_key, true).await?;
    Ok((admission, keys.own_key))
}

/// A GET that uses no model (model lists, a model's description): admit the
/// client, then forward to `path` — whose own error, if any, comes after the
/// client's (the key is checked before anything else).
pub async fn forward_get(
    req: &HttpRequest,
    state: &AppState,
    surface: Surface,
    path: Result<String, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let (admission, own_key) = admit(req, state, surface).await?;
    let target = Target {
        surface,
        method: Method::GET,
        path: path?,
        query: query(req.query_string())?,
        model: None,
        framing: Framing::Unary,
        counts_tokens: false,
        resources: Resources::default(),
    };
    forward(req, state, &admission, own_key, target, Bytes::new()).await
}

/// Checks the call against the client's policy, then hands it to the pipeline.
///
/// Not an `async fn`, like [`call`]: every call in flight holds this future
/// while it waits, and an `async fn` keeps a second copy of its arguments.
pub fn forward<'a>(
    req: &'a HttpRequest,
    state: &'a AppState,
    admission: &'a Admission,
    own_key: Option<String>,
    target: Target,
    body: Bytes,
) -> impl Future<Output = Result<HttpResponse, ApiError>> + 'a {
    // Mapped, not awaited in an async block that captures it: such a block
    // holds the call's future twice, as captured and as being awaited.
    call(req, state, admission, own_key, target, body)
        .map(move |called| Ok(respond(req, called?.reply)))
}

/// As [`forward`], answering Gemini's reply for the route to finish, with the
/// call's owner (who it was made for, and with which key).
///
/// Every call in flight holds this future while it waits for Gemini, so its
/// other waits (on the ownership store, for calls that name or create a
/// resource) are boxed where they happen, and it is not an `async fn` (one of
/// those keeps a second copy of its arguments).
#[allow(clippy::manual_async_fn)]
pub fn call<'a>(
    req: &'a HttpRequest,
    state: &'a AppState,
    admission: &'a Admission,
    own_key: Option<String>,
    target: Target,
    body: Bytes,
) -> impl Future<Output = Result<Called, ApiError>> + 'a {
    async move {
        let client = &admission.client;
        let model = target.model.as_ref().map(ModelId::display_id);
        if let Some(model) = &model {
            RequestLog::update(req, |log| log.model = Some(model.clone()));
        }
        let mut credential =
            Credential::from(client.authorize(own_key.as_deref(), model.as_deref())?);
        if matches!(credential, Credential::Server) {
            let named = owned::named(target.resources.named.as_ref(), &body)?;
            if !named.is_empty() {
                if let Some(index) = Box::pin(owned::pin(state, &client.name, &named)).await? {
                    credential = Credential::Pinned(index);
                }
            }
            if let Some(index) = target.resources.list_key {
                credential = Credential::Pinned(index);
            }
        }
        let mut charge = auth::admit_model(state, admission, model.as_deref())?;
        let route_charge = target
            .resources
            .route_charges
            .then(|| std::mem::replace(&mut charge, crate::quota::Charge::none()));
        let started = Instant::now();
        let mut headers = forwarded_headers(req);
        headers.extend(
            req.headers()
                .iter()
                .filter(|(name, _)| target.resources.extra_headers.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        let own = matches!(credential, Credential::Client(_));
        let call = UpstreamCall {
            method: target.method.clone(),
            path: target.path,
            query: target.query.encoded,
            credential,
            key_style: match target.surface {
                Surface::Gemini => KeyStyle::GoogHeader,
                Surface::OpenAi => KeyStyle::Bearer,
            },
            headers,
            body,
            framing: target.framing,
            expect: Expect::Relay,
            model: model.unwrap_or_default(),
            client: client.name.clone(),
            counts_tokens: target.counts_tokens,
            deadline: started + state.limits.upstream_timeout,
            charge,
        };
        // Taken apart at once, not named: a local kept across the wait
        // below would have room in every state of this future.
        let CallOutcome {
            result,
            attempts,
            server_key,
            ..
        } = state.upstream.call(call).await;
        RequestLog::update(req, |log| log.attempts = attempts);
        let mut reply = result?;
        if target.resources.extra_headers.is_empty() {
            // Only the upload route rewrites an upload URL; nowhere else may one
            // pass (it could carry a key).
            reply
                .headers
                .retain(|(name, _)| !name.as_str().starts_with("x-goog-upload-"));
        }
        let owner = owned::owner_of(state, &client.name, own, server_key);
        if reply.failure.is_none() && reply.status.is_success() {
            let created = owner.as_ref().zip(target.resources.creates);
            let deleted = target
                .resources
                .named
                .as_ref()
                .filter(|_| target.method == Method::DELETE && !own);
            // One wait, boxed, for both: only calls that create or delete a
            // resource have one.
            if created.is_some() || deleted.is_some() {
                Box::pin(async {
                    if let Some((owner, kind)) = created {
                        owned::record_created(state, kind, owner, &reply).await;
                    }
                    if let Some((kind, id)) = deleted {
                        state.upstream.context().ownership.forget(*kind, id).await;
                    }
                })
                .await;
            }
        }
        Ok(Called {
            reply,
            owner,
            charge: route_charge,
        })
    }
}

pub fn forwarded_headers(req: &HttpRequest) -> Vec<(HeaderName, HeaderValue)> {
    req.headers()
        .iter()
        .filter(|(name, _)| FORWARDED_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

pub fn respond(req: &HttpRequest, reply: Reply) -> HttpResponse {
    let mut response = HttpResponse::build(reply.status);
    for (name, value) in reply.headers {
        response.insert_header((name, value));
    }
    let code = reply.failure.as_ref().map_or("OK", |f| f.code.as_str());
    response.extensions_mut().insert(ResponseCode(code));
    if let Some(tokens) = reply.tokens {
        RequestLog::update(req, |log| log.tokens = tokens.total);
    }
    match reply.body {
        ReplyBody::Full(body) => response.body(body),
        ReplyBody::Stream(relay) => {
            response
                .extensions_mut()
                .insert(StreamOutcome(relay.end.clone()));
            // An HTTP/2 connection carries the client's other streams too:
            // a stalled stream is not a reason to cut them all.
            let socket = req
                .conn_data::<crate::routes::stream::ClientSocket>()
                .copied()
                .filter(|_| req.version() != actix_web::http::Version::HTTP_2);
            response.streaming(RelayedStream::new(relay, socket))
        }
    }
}

/// Reads a pass-through request body within `MAX_NATIVE_BODY_BYTES`.
pub async fn body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    read_body(req, payload, state.limits.max_native_body_bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_as_gemini_reads_it() {
        let read = |raw: &str| query(raw).map(|q| (q.alt, q.encoded));
        assert_eq!(read(""), Ok((None, String::new())));
        assert_eq!(read("alt=sse"), Ok((Some(Alt::Sse), "alt=sse".into())));
        assert_eq!(read("alt=%73se"), Ok((Some(Alt::Sse), "alt=sse".into())));
        assert_eq!(
            read("alt=json&key=secret"),
            Ok((Some(Alt::Json), "alt=json".into()))
        );
        assert_eq!(
            read("pageSize=5&pageToken=a%2Fb&other=1"),
            Ok((None, "pageSize=5&pageToken=a%2Fb".into()))
        );
        for bad in ["alt=proto", "alt=", "alt=sse&alt=json", "alt=SSE"] {
            assert_eq!(
                query(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidRequest),
                "{bad}"
            );
        }
    }
}
