//! The request pipeline for every upstream route, in upstream's order: route, auth,
//! deadline, model, body, quota, then the scenario the request asked for
//! (docs/gemini-wire.md#what-upstream-checks-and-in-which-order).
//!
//! Scenarios apply only after the auth checks pass, so a test of the proxy's key handling
//! cannot be masked by a scenario; a `mock-*` model is always "known".

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::answer::prepare;
use super::auth::{check_auth, check_quota, header_str};
use super::catalogue;
use super::deliver::{self, Delivery, Knobs};
use super::errors::{ApiError, QuotaWindow, Wrap};
use super::refusal::KeyRefusal;
use super::reply::{Reply, HTML};
use super::route::{ModelMethod, Query, Route};
use super::scenario::{ErrorKind, Scenario};
use super::state::{InFlight, Shared};
use super::MockConfig;

/// Model named in scenario bodies when the route has none.
const DEFAULT_SCENARIO_MODEL: &str = "gemini-2.5-flash";

/// Every request that is not a `/__mock/*` control call lands here.
pub(crate) async fn upstream(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let shared: Arc<Shared> = shared.into_inner();
    let cfg = shared.config();
    shared.note_request(&req, &body, cfg.record);
    let in_flight = InFlight::new(Arc::clone(&shared));
    let knobs = Knobs::read(&req, &cfg);
    if let Some(response) = super::jobs::serve(&req, &body, &cfg, &shared, knobs).await {
        return response;
    }
    let (reply, delivery) = decide(&req, &body, &cfg, &shared, &knobs);
    deliver::send(reply, delivery, knobs, in_flight, &shared.base_url).await
}

/// `/__mock/redirect-target`: recorded like an upstream call, so a test can see that
/// nobody followed the `redirect` scenario.
pub(crate) async fn redirect_target(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let cfg = shared.config();
    shared.note_request(&req, &body, cfg.record);
    HttpResponse::Ok()
        .content_type(super::reply::JSON)
        .body("{\n  \"redirected\": true\n}\n")
}

fn decide(
    req: &HttpRequest,
    body: &[u8],
    cfg: &MockConfig,
    shared: &Shared,
    knobs: &Knobs,
) -> (Reply, Delivery) {
    let Some(route) = Route::parse(req.method(), req.path()) else {
        return (not_found_page(req.path()), Delivery::Normal);
    };
    let query = Query::parse(req.query_string());
    let stream_array = matches!(
        &route,
        Route::Model {
            method: ModelMethod::Stream,
            ..
        }
    ) && !query.sse;
    let wrap = if route.is_openai() || stream_array {
        Wrap::Array
    } else {
        Wrap::Object
    };
    match pipeline(req, body, cfg, shared, knobs, &route, &query) {
        Ok(answer) => answer,
        Err(e) => (e.reply(wrap), Delivery::Normal),
    }
}

fn pipeline(
    req: &HttpRequest,
    body: &[u8],
    cfg: &MockConfig,
    shared: &Shared,
    knobs: &Knobs,
    route: &Route,
    query: &Query,
) -> Result<(Reply, Delivery), ApiError> {
    let path_model = match route {
        Route::Model { id, .. } | Route::GetModel { id, .. } => Some(id.as_str()),
        _ => None,
    };
    let key = check_auth(req, route, query, cfg)?;
    check_deadline(req)?;
    check_model(route)?;
    let project = super::project::project_of(cfg, &key);
    let prepared = prepare(route, body, query, shared, &project)?;
    let model = path_model.or(prepared.body_model());
    if let (true, Some(model)) = (route.is_model_call(), model) {
        check_quota(cfg, &key, model)?;
    }
    let scenario = header_str(req, "x-mock-scenario")
        .and_then(Scenario::parse)
        .or_else(|| model.and_then(Scenario::from_model))
        .or_else(|| prepared.prompt_text().and_then(Scenario::from_prompt));
    match &scenario {
        Some(Scenario::Error(kind)) => {
            let asked = Asked {
                version: route.version(),
                model: model.unwrap_or(DEFAULT_SCENARIO_MODEL),
                verb: verb_of(route),
                key: &key,
            };
            return Err(scenario_error(*kind, &asked, cfg));
        }
        Some(Scenario::Flaky { name, failures }) if shared.flaky_should_fail(name, *failures) => {
            return Err(ApiError::overloaded());
        }
        Some(Scenario::FailHalf) if shared.fail_half_should_fail() => {
            return Err(ApiError::overloaded());
        }
        _ => {}
    }
    let delivery = Delivery::of(scenario.as_ref());
    Ok((prepared.finish(scenario.as_ref(), knobs.pace), delivery))
}

/// Upstream refuses client deadlines under 10 s (`X-Server-Timeout`, in seconds).
fn check_deadline(req: &HttpRequest) -> Result<(), ApiError> {
    match header_str(req, "x-server-timeout").and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(seconds) if seconds < 10 => Err(ApiError::deadline_too_short(seconds)),
        _ => Ok(()),
    }
}

fn check_model(route: &Route) -> Result<(), ApiError> {
    let (version, id, verb) = match route {
        Route::Model { tuned: true, .. } => return Ok(()),
        Route::Model {
            version,
            id,
            method,
            ..
        } => (*version, id, method.verb()),
        Route::GetModel { version, id } => (*version, id, "get"),
        _ => return Ok(()),
    };
    if catalogue::is_known(version, id) {
        Ok(())
    } else {
        Err(ApiError::model_not_found(
            &format!("models/{id}"),
            version,
            verb,
        ))
    }
}

fn verb_of(route: &Route) -> &'static str {
    match route {
        Route::Model { method, .. } => method.verb(),
        _ => "generateContent",
    }
}

/// What an error scenario's body may quote from the request.
struct Asked<'a> {
    version: &'a str,
    /// The request's model (bare id), or a default when the route names none.
    model: &'a str,
    verb: &'a str,
    key: &'a str,
}

/// The id the `403-file` scenario names: a request need not name a file to ask for it.
const SCENARIO_FILE_ID: &str = "mock-file";

fn scenario_error(kind: ErrorKind, asked: &Asked<'_>, cfg: &MockConfig) -> ApiError {
    let model = asked.model;
    let minute = QuotaWindow::InputTokensPerMinute;
    let day = QuotaWindow::RequestsPerDay;
    match kind {
        ErrorKind::BadKey400 => ApiError::api_key_invalid(),
        ErrorKind::Geo400 => ApiError::geo_blocked(),
        ErrorKind::Invalid400 => ApiError::invalid("Request contains an invalid argument."),
        ErrorKind::Forbidden403 => ApiError::forbidden(),
        ErrorKind::File403 => ApiError::file_denied(SCENARIO_FILE_ID),
        ErrorKind::Suspended403 => KeyRefusal::Suspended.error(asked.key),
        ErrorKind::ServiceDisabled403 => KeyRefusal::ServiceDisabled.error(asked.key),
        ErrorKind::NotFound404 => {
            ApiError::model_not_found(&format!("models/{model}"), asked.version, asked.verb)
        }
        ErrorKind::Quota429(None) => ApiError::quota(minute, model, cfg.retry_delay.clone()),
        ErrorKind::Quota429(Some(n)) => ApiError::quota(minute, model, Some(format!("{n}s"))),
        ErrorKind::Quota429NoRetry => ApiError::quota(minute, model, None),
        ErrorKind::QuotaDay429 => ApiError::quota(day, model, cfg.retry_delay.clone()),
        ErrorKind::QuotaDay429NoRetry => ApiError::quota(day, model, None),
        ErrorKind::Internal500 => ApiError::internal(),
        ErrorKind::Unavailable503 => ApiError::overloaded(),
        ErrorKind::Deadline504 => ApiError::deadline_exceeded(),
    }
}

/// Google's front end answers unknown paths with an HTML page, not JSON.
pub(crate) fn not_found_page(path: &str) -> Reply {
    let escaped: String = path
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | '&' | '"'))
        .collect();
    let body = format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n  \
         <p><b>404.</b> <ins>That\u{2019}s an error.</ins>\n  <p>The requested URL <code>{escaped}</code> \
         was not found on this server.  <ins>That\u{2019}s all we know.</ins>\n"
    );
    Reply::full(StatusCode::NOT_FOUND, HTML, body)
}
