//! The Batch API: `models/{m}:batchGenerateContent` (and `:asyncBatchEmbedContent`)
//! enqueue a batch, `batches/{id}` is polled until it is done, listed, cancelled and
//! deleted (docs/gemini-wire.md#batches).
//!
//! A batch is answered whole at creation, with the same answers generateContent gives,
//! and shown as pending, then running, then succeeded as `batch_delay` passes: a proxy's
//! test needs the poll loop, not a queue.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::check_quota;
use super::bodies::{self, Answer, Shape};
use super::catalogue;
use super::errors::ApiError;
use super::jobs::{self, empty, lock, not_found, opaque_id, timestamp, Call};
use super::reply::Reply;
use super::request::{count_words, embed, parse_json, EmbedRequest, GenerateRequest};
use super::state::Shared;

const BATCH_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch";
const OUTPUT_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput";
const EMBED_BATCH_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch";
const EMBED_OUTPUT_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatchOutput";
/// Batch ids in captures are 40 lowercase letters and digits.
const ID_LEN: usize = 40;
/// List pages when `pageSize` is absent (inferred; Google's usual default).
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
/// google.rpc.Code INVALID_ARGUMENT, for a request of the batch that could not run.
const CODE_INVALID_ARGUMENT: i32 = 3;

/// One batch, as the mock keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Batch {
    pub id: String,
    pub project: String,
    pub key: String,
    /// The bare model id.
    pub model: String,
    display_name: Option<String>,
    embed: bool,
    created: SystemTime,
    started: Instant,
    delay: Duration,
    cancelled: Option<(Instant, SystemTime)>,
    pub deleted: bool,
    input: Input,
}

#[derive(Clone, Debug)]
enum Input {
    /// The answers, made at creation, shown once the batch has succeeded.
    Inline(Vec<InlinedResponse>),
    /// `files/<id>`; the results go to a file named after the batch.
    File { requests: usize },
}

/// Where a batch stands, in Gemini's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchState {
    Pending,
    Running,
    Succeeded,
    Cancelled,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Pending => "BATCH_STATE_PENDING",
            BatchState::Running => "BATCH_STATE_RUNNING",
            BatchState::Succeeded => "BATCH_STATE_SUCCEEDED",
            BatchState::Cancelled => "BATCH_STATE_CANCELLED",
        }
    }

    fn done(self) -> bool {
        matches!(self, BatchState::Succeeded | BatchState::Cancelled)
    }
}

impl Serialize for BatchState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A batch as tests see it ([`crate::MockGemini::batches`], `GET /__mock/jobs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchRecord {
    /// `batches/<id>`.
    pub name: String,
    /// The project of the key that made it.
    pub project: String,
    /// The key that made it.
    pub key: String,
    /// The bare model id.
    pub model: String,
    pub state: BatchState,
    pub deleted: bool,
}

impl Batch {
    fn state(&self, now: Instant) -> BatchState {
        if self.cancelled.is_some() {
            return BatchState::Cancelled;
        }
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.delay {
            BatchState::Succeeded
        } else if elapsed >= self.delay / 2 {
            BatchState::Running
        } else {
            BatchState::Pending
        }
    }

    pub fn record(&self) -> BatchRecord {
        BatchRecord {
            name: format!("batches/{}", self.id),
            project: self.project.clone(),
            key: self.key.clone(),
            model: self.model.clone(),
            state: self.state(Instant::now()),
            deleted: self.deleted,
        }
    }

    fn requests(&self) -> usize {
        match &self.input {
            Input::Inline(items) => items.len(),
            Input::File { requests } => *requests,
        }
    }

    /// The long-running operation Gemini answers for the batch, in the field order of
    /// a real capture.
    fn operation(&self, now: Instant) -> Operation {
        let state = self.state(now);
        let name = format!("batches/{}", self.id);
        let (batch_type, output_type) = if self.embed {
            (EMBED_BATCH_TYPE, EMBED_OUTPUT_TYPE)
        } else {
            (BATCH_TYPE, OUTPUT_TYPE)
        };
        let output = |type_url| {
            (state == BatchState::Succeeded).then(|| Output {
                type_url,
                inlined_responses: match &self.input {
                    Input::Inline(items) => Some(Inlined {
                        inlined_responses: items.clone(),
                    }),
                    Input::File { .. } => None,
                },
                responses_file: match self.input {
                    Input::File { .. } => Some(format!("files/batch-{}", self.id)),
                    Input::Inline(_) => None,
                },
            })
        };
        let end = match (state, self.cancelled) {
            (_, Some((_, at))) => Some(at),
            (BatchState::Succeeded, None) => Some(self.created + self.delay),
            _ => None,
        };
        let update = match state {
            BatchState::Pending => self.created,
            BatchState::Running => self.created + self.delay / 2,
            BatchState::Succeeded | BatchState::Cancelled => end.unwrap_or(self.created),
        };
        let count = self.requests();
        let failed = match &self.input {
            Input::Inline(items) => items.iter().filter(|i| i.error.is_some()).count(),
            Input::File { .. } => 0,
        };
        let n = |n: usize| (n > 0).then(|| n.to_string());
        let stats = match state {
            BatchState::Pending | BatchState::Running => Stats {
                request_count: count.to_string(),
                pending_request_count: n(count),
                ..Stats::default()
            },
            BatchState::Succeeded => Stats {
                request_count: count.to_string(),
                successful_request_count: n(count - failed),
                failed_request_count: n(failed),
                ..Stats::default()
            },
            BatchState::Cancelled => Stats {
                request_count: count.to_string(),
                ..Stats::default()
            },
        };
        Operation {
            name: name.clone(),
            metadata: Metadata {
                type_url: batch_type,
                model: format!("models/{}", self.model),
                display_name: self.display_name.clone(),
                output: output(None),
                create_time: timestamp(self.created, true),
                end_time: end.map(|t| timestamp(t, true)),
                update_time: timestamp(update, true),
                batch_stats: stats,
                state: state.as_str(),
                name,
            },
            done: state.done().then_some(true),
            response: output(Some(output_type)),
        }
    }
}

#[derive(Serialize)]
struct Operation {
    name: String,
    metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    done: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Output>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(rename = "@type")]
    type_url: &'static str,
    model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Output>,
    create_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<String>,
    update_time: String,
    batch_stats: Stats,
    state: &'static str,
    name: String,
}

/// `GenerateContentBatchOutput`: typed in `response`, untyped in `metadata.output`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    #[serde(rename = "@type", skip_serializing_if = "Option::is_none")]
    type_url: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inlined_responses: Option<Inlined>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responses_file: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inlined {
    inlined_responses: Vec<InlinedResponse>,
}

#[derive(Clone, Debug, Serialize)]
struct InlinedResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
}

/// google.rpc.Status of one request of the batch.
#[derive(Clone, Debug, Serialize)]
struct Status {
    code: i32,
    message: String,
}

/// int64 counts are strings in proto3 JSON; zero counts are left out.
#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    request_count: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_request_count: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    successful_request_count: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_request_count: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    operations: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// The create body: `{"batch": {...}}`, either casing (the python SDK writes
/// `displayName` and `inputConfig`, but `file_name` for embedding batches).
#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    batch: Option<BatchBody>,
}

#[derive(Deserialize)]
struct BatchBody {
    #[serde(default, rename = "displayName", alias = "display_name")]
    display_name: Option<String>,
    #[serde(default, rename = "inputConfig", alias = "input_config")]
    input_config: Option<InputConfig>,
}

#[derive(Deserialize)]
struct InputConfig {
    #[serde(default, rename = "fileName", alias = "file_name")]
    file_name: Option<String>,
    #[serde(default)]
    requests: Option<Requests>,
}

#[derive(Deserialize)]
struct Requests {
    #[serde(default)]
    requests: Option<Vec<Item>>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    request: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// Whether `files/<id>` is a file of `project` the batch may read; when it is not, the
/// create answers the Files API's 403 for it, as a generateContent naming it would.
fn input_file_exists(shared: &Shared, project: &str, id: &str) -> bool {
    shared.files.get(project, id).is_ok()
}

pub(crate) fn create(
    call: &Call<'_>,
    model: &str,
    embed_batch: bool,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let verb = if embed_batch {
        "asyncBatchEmbedContent"
    } else {
        "batchGenerateContent"
    };
    if !catalogue::is_known(call.version, model) {
        return Err(ApiError::model_not_found(
            &format!("models/{model}"),
            call.version,
            verb,
        ));
    }
    // A batch spends the model's quota like the calls it queues (inferred), so an
    // exhausted quota refuses it with the same 429.
    check_quota(call.cfg, &call.key, model)?;
    let body: CreateBody = parse_json(body)?;
    let batch = body
        .batch
        .ok_or_else(|| ApiError::invalid("* batch: batch is required\n"))?;
    let config = batch
        .input_config
        .ok_or_else(|| ApiError::invalid("* batch.input_config: input_config is required\n"))?;
    let input = match (config.file_name, config.requests) {
        (Some(file), None) => {
            let id = super::resources::file_id(&file)
                .filter(|_| file.starts_with("files/"))
                .ok_or_else(|| ApiError::invalid(format!("Invalid file name: {file}")))?;
            if !input_file_exists(call.shared, &call.project, id) {
                return Err(ApiError::file_denied(id));
            }
            Input::File { requests: 1 }
        }
        (None, Some(requests)) => {
            let items = requests.requests.unwrap_or_default();
            if items.is_empty() {
                return Err(ApiError::invalid(
                    "* batch.input_config.requests: requests must not be empty\n",
                ));
            }
            Input::Inline(
                items
                    .into_iter()
                    .map(|item| answer(model, embed_batch, item))
                    .collect(),
            )
        }
        _ => {
            return Err(ApiError::invalid(
                "* batch.input_config: exactly one of file_name and requests must be set\n",
            ))
        }
    };
    let batch = Batch {
        id: opaque_id(ID_LEN),
        project: call.project.clone(),
        key: call.key.clone(),
        model: model.to_owned(),
        display_name: batch.display_name,
        embed: embed_batch,
        created: SystemTime::now(),
        started: Instant::now(),
        delay: call.cfg.batch_delay,
        cancelled: None,
        deleted: false,
        input,
    };
    let operation = batch.operation(Instant::now());
    lock(&call.shared.jobs.batches).push(batch);
    Ok(Reply::json(&operation))
}

/// One request of the batch answered as generateContent (or embedContent) would; a
/// request that generateContent would refuse fails alone, as in a real batch.
fn answer(model: &str, embed_batch: bool, item: Item) -> InlinedResponse {
    let failed = |e: ApiError| InlinedResponse {
        response: None,
        error: Some(Status {
            code: CODE_INVALID_ARGUMENT,
            message: e.message,
        }),
        metadata: item.metadata.clone(),
    };
    let request = item.request.clone().unwrap_or(Value::Null);
    let response = if embed_batch {
        match serde_json::from_value::<EmbedRequest>(request) {
            Ok(req) => serde_json::to_value(bodies::embed_one(embed(&req.text()))),
            Err(e) => return failed(ApiError::invalid(e.to_string())),
        }
    } else {
        let req = match serde_json::from_value::<GenerateRequest>(request) {
            Ok(req) => req,
            Err(e) => return failed(ApiError::invalid(e.to_string())),
        };
        if let Err(e) = req.validate() {
            return failed(e);
        }
        let prompt = req.prompt();
        let text = format!("echo: {}", prompt.last_user_text);
        let answer = Answer {
            model: model.to_owned(),
            response_id: bodies::response_id(),
            prompt_tokens: prompt.tokens,
            cached_tokens: 0,
            shape: Shape::Normal,
        };
        serde_json::to_value(answer.response(&text, count_words(&text), true, true))
    };
    InlinedResponse {
        response: response.ok(),
        error: None,
        metadata: item.metadata,
    }
}

/// Runs `f` on the caller's batch `id`, or answers NOT_FOUND.
fn with_batch<T>(
    call: &Call<'_>,
    id: &str,
    f: impl FnOnce(&mut Batch) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut all = lock(&call.shared.jobs.batches);
    let batch = all
        .iter_mut()
        .find(|b| b.id == id && b.project == call.project && !b.deleted)
        .ok_or_else(not_found)?;
    f(batch)
}

pub(crate) fn get(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    let (reply, output) = with_batch(call, id, |b| {
        let now = Instant::now();
        let output = (matches!(b.input, Input::File { .. })
            && b.state(now) == BatchState::Succeeded)
            .then(|| format!("batch-{}", b.id));
        Ok((Reply::json(&b.operation(now)), output))
    })?;
    // A finished file batch's answers are a file of the project, as Gemini's
    // `responsesFile` is: readable, and downloadable, with the batch's key.
    if let Some(file) = output {
        call.shared
            .files
            .put_generated(&call.project, file, b"{\"response\": {}}\n");
    }
    Ok(reply)
}

/// Only a batch still pending or running can be cancelled (inferred: Google's long-running
/// operations refuse to cancel a finished one with FAILED_PRECONDITION).
pub(crate) fn cancel(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    with_batch(call, id, |b| {
        if b.state(Instant::now()).done() {
            return Err(ApiError::new(
                400,
                "FAILED_PRECONDITION",
                "The batch is already in a terminal state.",
            ));
        }
        b.cancelled = Some((Instant::now(), SystemTime::now()));
        Ok(empty())
    })
}

pub(crate) fn delete(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    with_batch(call, id, |b| {
        b.deleted = true;
        Ok(empty())
    })
}

/// The caller's project's batches, oldest first, `pageSize` at a time; the page token
/// is the offset of the next page, opaque to clients.
pub(crate) fn list(
    call: &Call<'_>,
    page_size: Option<&str>,
    page_token: Option<&str>,
) -> Result<Reply, ApiError> {
    let size = match page_size {
        None => DEFAULT_PAGE,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n <= 0 => DEFAULT_PAGE,
            Ok(n) => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
            Err(_) => return Err(ApiError::invalid(format!("Invalid page size: {s}"))),
        },
    };
    let start = match page_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("batches-from-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::invalid("Invalid page token."))?,
    };
    let now = Instant::now();
    let all = lock(&call.shared.jobs.batches);
    let own: Vec<&Batch> = all
        .iter()
        .filter(|b| b.project == call.project && !b.deleted)
        .collect();
    let operations = own
        .iter()
        .skip(start)
        .take(size)
        .map(|b| serde_json::to_value(b.operation(now)).unwrap_or(Value::Null))
        .collect();
    let next = start + size;
    let page = ListPage {
        operations,
        next_page_token: (next < own.len()).then(|| format!("batches-from-{next}")),
    };
    Ok(Reply::json(&page))
}

/// Every batch made since the mock started, for tests.
pub(crate) fn records(jobs: &jobs::Jobs) -> Vec<BatchRecord> {
    lock(&jobs.batches).iter().map(Batch::record).collect()
}
