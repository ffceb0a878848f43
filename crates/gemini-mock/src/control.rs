//! `/__mock/*`: the HTTP face of `MockGemini`'s methods, for a mock that runs as a separate
//! process (benchmarks, demo mode). These calls are neither counted nor recorded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};

use super::live::LiveFault;
use super::refusal::KeyRefusal;
use super::state::Shared;
use super::{Exhaustion, MockConfig};

#[derive(Serialize)]
struct RequestView<'a> {
    method: &'a str,
    /// `HTTP/1.1` or `HTTP/2.0`.
    version: String,
    path_and_query: &'a str,
    headers: &'a [(String, String)],
    body: String,
}

pub(crate) async fn requests(shared: web::Data<Shared>) -> HttpResponse {
    let all = shared.requests();
    let views: Vec<RequestView<'_>> = all
        .iter()
        .map(|r| RequestView {
            method: &r.method,
            version: format!("{:?}", r.version),
            path_and_query: &r.path_and_query,
            headers: &r.headers,
            body: String::from_utf8_lossy(&r.body).into_owned(),
        })
        .collect();
    HttpResponse::Ok().json(views)
}

pub(crate) async fn reset(shared: web::Data<Shared>) -> HttpResponse {
    shared.reset();
    HttpResponse::Ok().json(serde_json::json!({"reset": true}))
}

pub(crate) async fn stats(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.stats())
}

#[derive(Serialize)]
struct LiveView {
    /// Close frames received from clients: `[code, reason]`, in arrival order.
    closes: Vec<(u16, String)>,
    sessions: Vec<SessionView>,
}

#[derive(Serialize)]
struct SessionView {
    id: usize,
    path_and_query: String,
    open: bool,
    messages: Vec<MessageView>,
    client_close: Option<(u16, String)>,
    mock_close: Option<(u16, String)>,
}

#[derive(Serialize)]
struct MessageView {
    binary: bool,
    /// The payload as text (lossily, for a binary frame that is not UTF-8).
    data: String,
}

/// `GET /__mock/live`: the Live sessions and the close frames clients sent.
pub(crate) async fn live(shared: web::Data<Shared>) -> HttpResponse {
    let sessions = shared
        .live
        .sessions()
        .into_iter()
        .map(|s| SessionView {
            id: s.id,
            path_and_query: s.path_and_query,
            open: s.open,
            messages: s
                .messages
                .iter()
                .map(|m| MessageView {
                    binary: m.binary,
                    data: m.text(),
                })
                .collect(),
            client_close: s.client_close,
            mock_close: s.mock_close,
        })
        .collect();
    HttpResponse::Ok().json(LiveView {
        closes: shared.live.closes(),
        sessions,
    })
}

/// Applies any of the known fields; an unknown field or a wrong type is refused whole,
/// so a typo in a benchmark script does not pass silently.
pub(crate) async fn config(shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let patch: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("config must be a JSON object: {e}")),
    };
    let mut next = MockConfig::clone(&shared.config());
    if let Err(msg) = apply(&mut next, &patch) {
        return bad_request(msg);
    }
    let view = ConfigView::of(&next);
    shared.update_config(|c| *c = next);
    HttpResponse::Ok().json(view)
}

fn bad_request(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({"error": message}))
}

fn keys(v: &Value, field: &str) -> Result<HashSet<String>, String> {
    let items = v
        .as_array()
        .ok_or_else(|| format!("{field} must be an array of strings"))?;
    items
        .iter()
        .map(|k| k.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{field} must be an array of strings"))
}

/// `{"key": "suspended", ...}`; the names are those of `KeyRefusal::name`.
fn refusals(v: &Value) -> Result<HashMap<String, KeyRefusal>, String> {
    const WHAT: &str =
        "key_refusals must map keys to \"invalid\", \"suspended\" or \"service-disabled\"";
    let map = v.as_object().ok_or(WHAT)?;
    map.iter()
        .map(|(key, name)| {
            let refusal = name.as_str().and_then(KeyRefusal::from_name).ok_or(WHAT)?;
            Ok((key.clone(), refusal))
        })
        .collect()
}

/// `[{"key": "k" | null, "model": "m" | null, "per_day": bool}, ...]`.
fn exhaustions(v: &Value) -> Result<Vec<Exhaustion>, String> {
    const WHAT: &str = "exhausted must be an array of {\"key\", \"model\", \"per_day\"} objects";
    let items = v.as_array().ok_or(WHAT)?;
    let text = |item: &Map<String, Value>, field: &str| match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(WHAT),
    };
    items
        .iter()
        .map(|item| {
            let item = item.as_object().ok_or(WHAT)?;
            if item
                .keys()
                .any(|k| !matches!(k.as_str(), "key" | "model" | "per_day"))
            {
                return Err(WHAT.to_owned());
            }
            let per_day = match item.get("per_day") {
                None => false,
                Some(b) => b.as_bool().ok_or(WHAT)?,
            };
            Ok(Exhaustion {
                key: text(item, "key")?,
                model: text(item, "model")?,
                per_day,
            })
        })
        .collect()
}

fn live_fault(v: &Value) -> Result<Option<LiveFault>, String> {
    const WHAT: &str = "live_fault must be null or one of \"goaway\", \"close-mid-session\", \
         \"silence\", \"no-answer\", \"refuse-key\", \"quota\", \"quota-mid-session\"";
    match v {
        Value::Null => Ok(None),
        Value::String(name) => LiveFault::from_name(name)
            .map(Some)
            .ok_or_else(|| WHAT.to_owned()),
        _ => Err(WHAT.to_owned()),
    }
}

fn millis(v: &Value, field: &str) -> Result<Duration, String> {
    v.as_u64()
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{field} must be a non-negative integer (milliseconds)"))
}

fn apply(cfg: &mut MockConfig, patch: &Map<String, Value>) -> Result<(), String> {
    for (field, v) in patch {
        match field.as_str() {
            "accepted_keys" if v.is_null() => cfg.accepted_keys = None,
            "accepted_keys" => cfg.accepted_keys = Some(keys(v, field)?),
            "key_refusals" => cfg.key_refusals = refusals(v)?,
            "exhausted_keys" => cfg.exhausted_keys = keys(v, field)?,
            "exhausted" => cfg.exhausted = exhaustions(v)?,
            "retry_delay" if v.is_null() => cfg.retry_delay = None,
            "retry_delay" => {
                let s = v
                    .as_str()
                    .ok_or("retry_delay must be a string like \"26s\"")?;
                cfg.retry_delay = Some(s.to_owned());
            }
            "first_byte_delay_ms" => cfg.first_byte_delay = millis(v, field)?,
            "chunk_delay_ms" => cfg.chunk_delay = millis(v, field)?,
            "chunks" => {
                let n = v.as_u64().ok_or("chunks must be a non-negative integer")?;
                cfg.chunks = usize::try_from(n).map_err(|e| e.to_string())?;
            }
            "chunk_text_bytes" if v.is_null() => cfg.chunk_text_bytes = None,
            "chunk_text_bytes" => {
                let n = v
                    .as_u64()
                    .ok_or("chunk_text_bytes must be null or a non-negative integer")?;
                cfg.chunk_text_bytes = Some(usize::try_from(n).map_err(|e| e.to_string())?);
            }
            "split_usage" => {
                cfg.split_usage = v.as_bool().ok_or("split_usage must be a boolean")?;
            }
            "record" => cfg.record = v.as_bool().ok_or("record must be a boolean")?,
            "live_binary" => {
                cfg.live_binary = v.as_bool().ok_or("live_binary must be a boolean")?;
            }
            "live_fault" => cfg.live_fault = live_fault(v)?,
            "live_chunks" => {
                let n = v.as_u64().ok_or("live_chunks must be a positive integer")?;
                cfg.live_chunks = usize::try_from(n).map_err(|e| e.to_string())?.max(1);
            }
            "live_chunk_bytes" if v.is_null() => cfg.live_chunk_bytes = None,
            "live_chunk_bytes" => {
                let n = v
                    .as_u64()
                    .ok_or("live_chunk_bytes must be null or a non-negative integer")?;
                cfg.live_chunk_bytes = Some(usize::try_from(n).map_err(|e| e.to_string())?);
            }
            "live_delay_ms" => cfg.live_delay = millis(v, field)?,
            other => match super::held_control::apply(cfg, other, v) {
                Some(applied) => applied?,
                None => return Err(format!("unknown config field {other:?}")),
            },
        }
    }
    Ok(())
}

/// The configuration as `POST /__mock/config` reports it back.
#[derive(Serialize)]
struct ConfigView {
    accepted_keys: Option<Vec<String>>,
    key_refusals: BTreeMap<String, &'static str>,
    exhausted_keys: Vec<String>,
    exhausted: Vec<ExhaustionView>,
    retry_delay: Option<String>,
    first_byte_delay_ms: u128,
    chunk_delay_ms: u128,
    chunks: usize,
    chunk_text_bytes: Option<usize>,
    split_usage: bool,
    record: bool,
    live_binary: bool,
    live_fault: Option<&'static str>,
    live_chunks: usize,
    live_chunk_bytes: Option<usize>,
    live_delay_ms: u128,
}

#[derive(Serialize)]
struct ExhaustionView {
    key: Option<String>,
    model: Option<String>,
    per_day: bool,
}

impl ConfigView {
    fn of(c: &MockConfig) -> Self {
        let sorted = |s: &HashSet<String>| {
            let mut v: Vec<String> = s.iter().cloned().collect();
            v.sort();
            v
        };
        ConfigView {
            accepted_keys: c.accepted_keys.as_ref().map(sorted),
            key_refusals: c
                .key_refusals
                .iter()
                .map(|(k, r)| (k.clone(), r.name()))
                .collect(),
            exhausted_keys: sorted(&c.exhausted_keys),
            exhausted: c
                .exhausted
                .iter()
                .map(|e| ExhaustionView {
                    key: e.key.clone(),
                    model: e.model.clone(),
                    per_day: e.per_day,
                })
                .collect(),
            retry_delay: c.retry_delay.clone(),
            first_byte_delay_ms: c.first_byte_delay.as_millis(),
            chunk_delay_ms: c.chunk_delay.as_millis(),
            chunks: c.chunks,
            chunk_text_bytes: c.chunk_text_bytes,
            split_usage: c.split_usage,
            record: c.record,
            live_binary: c.live_binary,
            live_fault: c.live_fault.map(LiveFault::name),
            live_chunks: c.live_chunks,
            live_chunk_bytes: c.live_chunk_bytes,
            live_delay_ms: c.live_delay.as_millis(),
        }
    }
}
