//! Work that outlives its request: batches (`batches.rs`) and interactions
//! (`interactions/`). Both are resources of the caller's project, found later by id,
//! so their routes share one dispatch, one store and one rule: another project's
//! resource is answered as if it did not exist (docs/gemini-wire.md#batches,
//! #interactions).
//!
//! States are not advanced by timers: each read computes where a job stands from the
//! time it was made and the configured delay, so no task outlives the mock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use super::auth::caller_key;
use super::batches::{self, Batch};
use super::deliver::{self, builder, Delivery, Knobs};
use super::errors::{ApiError, Wrap};
use super::interactions::{self, Interaction};
use super::reply::{Reply, SSE};
use super::route::Query;
use super::state::{InFlight, Shared};
use super::stream::{ScriptedBody, Step};
use super::MockConfig;

const VERSIONS: [&str; 3] = ["v1", "v1beta", "v1alpha"];

/// The batches and interactions every project made, deleted ones included (marked),
/// so tests can still see who made them.
#[derive(Default)]
pub(crate) struct Jobs {
    pub batches: Mutex<Vec<Batch>>,
    pub interactions: Mutex<Vec<Interaction>>,
}

/// A poisoned lock only means another handler panicked; the data is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The endpoints of long-running work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JobRoute {
    /// `POST /{v}/models/{model}:batchGenerateContent` or `:asyncBatchEmbedContent`.
    CreateBatch {
        model: String,
        embed: bool,
    },
    ListBatches,
    GetBatch(String),
    CancelBatch(String),
    DeleteBatch(String),
    CreateInteraction,
    GetInteraction(String),
    CancelInteraction(String),
    DeleteInteraction(String),
}

impl JobRoute {
    /// `(version, route)`, or `None` for every other path (the rest of the mock's).
    pub fn parse(method: &Method, path: &str) -> Option<(&'static str, JobRoute)> {
        let rest = path.strip_prefix('/')?;
        let (v, rest) = rest.split_once('/')?;
        let version = *VERSIONS.iter().find(|known| **known == v)?;
        let segs: Vec<&str> = rest.split('/').collect();
        let (get, post, delete) = (
            method == Method::GET,
            method == Method::POST,
            method == Method::DELETE,
        );
        let id = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let route = match segs.as_slice() {
            ["models", seg] if post => match seg.rsplit_once(':')? {
                (model, "batchGenerateContent") if !model.is_empty() => JobRoute::CreateBatch {
                    model: model.to_owned(),
                    embed: false,
                },
                (model, "asyncBatchEmbedContent") if !model.is_empty() => JobRoute::CreateBatch {
                    model: model.to_owned(),
                    embed: true,
                },
                _ => return None,
            },
            ["batches"] if get => JobRoute::ListBatches,
            ["batches", seg] => match seg.rsplit_once(':') {
                Some((batch, "cancel")) if post => JobRoute::CancelBatch(id(batch)?),
                None if get => JobRoute::GetBatch(id(seg)?),
                None if delete => JobRoute::DeleteBatch(id(seg)?),
                _ => return None,
            },
            ["interactions"] if post => JobRoute::CreateInteraction,
            ["interactions", one] if get => JobRoute::GetInteraction(id(one)?),
            ["interactions", one] if delete => JobRoute::DeleteInteraction(id(one)?),
            ["interactions", one, "cancel"] if post => JobRoute::CancelInteraction(id(one)?),
            _ => return None,
        };
        Some((version, route))
    }

    /// The gRPC method a Bearer token's 401 names (inferred from the REST names).
    fn rpc(&self, version: &str) -> String {
        let method = match self {
            JobRoute::CreateBatch { embed: false, .. } => "GenerativeService.BatchGenerateContent",
            JobRoute::CreateBatch { embed: true, .. } => "GenerativeService.AsyncBatchEmbedContent",
            JobRoute::ListBatches => "BatchService.ListOperations",
            JobRoute::GetBatch(_) => "BatchService.GetOperation",
            JobRoute::CancelBatch(_) => "BatchService.CancelOperation",
            JobRoute::DeleteBatch(_) => "BatchService.DeleteOperation",
            JobRoute::CreateInteraction => "InteractionService.CreateInteraction",
            JobRoute::GetInteraction(_) => "InteractionService.GetInteraction",
            JobRoute::CancelInteraction(_) => "InteractionService.CancelInteraction",
            JobRoute::DeleteInteraction(_) => "InteractionService.DeleteInteraction",
        };
        format!("google.ai.generativelanguage.{version}.{method}")
    }
}

/// Who is asking, for what: what every job handler needs.
pub(crate) struct Call<'a> {
    pub version: &'static str,
    pub key: String,
    pub project: String,
    pub cfg: &'a MockConfig,
    pub shared: &'a Shared,
    pub knobs: Knobs,
    /// The raw query string, for parameters only these routes read.
    pub query: &'a str,
}

/// What a job handler answers: a reply for `deliver`, or an event stream whose events
/// wait for the moment they happen (a background interaction's completion).
pub(crate) enum Outcome {
    Reply(Reply),
    Timed(Vec<Step>),
}

/// Serves `req` when it is a batch or interaction route; `None` leaves it to the rest of
/// the mock. The request has been recorded and counted already.
pub(crate) async fn serve(
    req: &HttpRequest,
    body: &[u8],
    cfg: &MockConfig,
    shared: &Arc<Shared>,
    knobs: Knobs,
) -> Option<HttpResponse> {
    let (version, route) = JobRoute::parse(req.method(), req.path())?;
    let in_flight = InFlight::new(Arc::clone(shared));
    let answer = answer(req, body, cfg, shared, knobs, version, &route);
    let response = match answer {
        Ok(Outcome::Reply(reply)) => {
            deliver::send(reply, Delivery::Normal, knobs, in_flight, &shared.base_url).await
        }
        Ok(Outcome::Timed(steps)) => {
            builder(StatusCode::OK, SSE).streaming(ScriptedBody::new(steps, in_flight))
        }
        Err(e) => {
            let reply = e.reply(Wrap::Object);
            deliver::send(reply, Delivery::Normal, knobs, in_flight, &shared.base_url).await
        }
    };
    Some(response)
}

fn answer(
    req: &HttpRequest,
    body: &[u8],
    cfg: &MockConfig,
    shared: &Shared,
    knobs: Knobs,
    version: &'static str,
    route: &JobRoute,
) -> Result<Outcome, ApiError> {
    let query = Query::parse(req.query_string());
    let key = caller_key(req, &query, cfg, false, || route.rpc(version))?;
    let call = Call {
        version,
        project: super::project::project_of(cfg, &key),
        key,
        cfg,
        shared,
        knobs,
        query: req.query_string(),
    };
    match route {
        JobRoute::CreateBatch { model, embed } => {
            batches::create(&call, model, *embed, body).map(Outcome::Reply)
        }
        JobRoute::ListBatches => batches::list(
            &call,
            query.page_size.as_deref(),
            query.page_token.as_deref(),
        )
        .map(Outcome::Reply),
        JobRoute::GetBatch(id) => batches::get(&call, id).map(Outcome::Reply),
        JobRoute::CancelBatch(id) => batches::cancel(&call, id).map(Outcome::Reply),
        JobRoute::DeleteBatch(id) => batches::delete(&call, id).map(Outcome::Reply),
        JobRoute::CreateInteraction => interactions::create(&call, body),
        JobRoute::GetInteraction(id) => interactions::get(&call, id),
        JobRoute::CancelInteraction(id) => interactions::cancel(&call, id).map(Outcome::Reply),
        JobRoute::DeleteInteraction(id) => interactions::delete(&call, id).map(Outcome::Reply),
    }
}

/// `GET /__mock/jobs`: every batch and interaction with the key and project that made
/// it, for a mock running as its own process. Neither counted nor recorded.
pub(crate) async fn control(shared: actix_web::web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "batches": batches::records(&shared.jobs),
        "interactions": interactions::records(&shared.jobs),
    }))
}

/// Google's answer for a resource id that names nothing the caller can see: another
/// project's, deleted, or never made. The same body for all three, so it tells nobody
/// which ids exist; and a 404 without ErrorInfo, so no proxy takes it for a key refusal.
pub(crate) fn not_found() -> ApiError {
    ApiError::new(404, "NOT_FOUND", "Requested entity was not found.")
}

/// `{}`: what cancel and delete answer (google.protobuf.Empty).
pub(crate) fn empty() -> Reply {
    Reply::json(&serde_json::Map::new())
}

/// A lowercase alphanumeric id of `len` characters, as opaque as Gemini's batch ids.
pub(crate) fn opaque_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// RFC 3339 in UTC with nanoseconds (`2025-12-10T18:27:01.407650525Z`), as batch
/// timestamps are written; `nanos` false gives whole seconds, as interactions have.
pub(crate) fn timestamp(t: SystemTime, nanos: bool) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos {
        let ns = since.subsec_nanos();
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ns:09}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), so the mock needs no date crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The value of query parameter `name` (percent-decoded), if present.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
        .ok()?
        .into_inner()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// One SSE event of the Interactions API: `data: <compact json>` and a blank line.
pub(crate) fn sse_data(json: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(json.len() + 8);
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(json);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_parsed_from_paths_and_methods() {
        let p = |m: Method, path: &str| JobRoute::parse(&m, path);
        assert_eq!(
            p(
                Method::POST,
                "/v1/models/gemini-2.5-flash:batchGenerateContent"
            ),
            Some((
                "v1",
                JobRoute::CreateBatch {
                    model: "gemini-2.5-flash".into(),
                    embed: false
                }
            ))
        );
        assert_eq!(
            p(Method::POST, "/v1beta/batches/abc:cancel"),
            Some(("v1beta", JobRoute::CancelBatch("abc".into())))
        );
        assert_eq!(
            p(Method::DELETE, "/v1alpha/interactions/v1_x"),
            Some(("v1alpha", JobRoute::DeleteInteraction("v1_x".into())))
        );
        assert_eq!(
            p(Method::POST, "/v1/interactions/v1_x/cancel"),
            Some(("v1", JobRoute::CancelInteraction("v1_x".into())))
        );
        assert_eq!(p(Method::POST, "/v1/models/x:generateContent"), None);
        assert_eq!(p(Method::PUT, "/v1/batches/abc"), None);
        assert_eq!(p(Method::GET, "/v2/batches"), None);
        assert_eq!(p(Method::GET, "/v1/batches/"), None);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::new(1_765_391_221, 407_650_525);
        assert_eq!(timestamp(t, true), "2025-12-10T18:27:01.407650525Z");
        assert_eq!(timestamp(t, false), "2025-12-10T18:27:01Z");
        assert_eq!(timestamp(UNIX_EPOCH, false), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap, false), "2000-02-29T00:00:00Z");
    }
}
