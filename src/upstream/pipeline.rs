//! The one path every call to Gemini takes, whatever route asked for it.
//!
//! A route describes its call ([`UpstreamCall`]: target, credential, body,
//! framing); this module picks the key, builds the URL, makes the attempts
//! (key failover, bounded retries with full-jitter backoff, one deadline),
//! classifies each answer once, and returns a [`Reply`] that carries its
//! outcome: the code, the tokens, and the body to relay. What an answer says
//! about a server key is acted on here and nowhere else, and a server key's
//! failure is never relayed: the client gets the service's own error.

use super::classify::{self, Answer, Failure, KeyOwner, KeyVerdict};
use super::egress::{Clients, Egress};
use super::exchange::{attempt, Attempt, ErrorAnswer, Plan};
use super::h2pool::H2Pool;
use super::key_pool::{KeyPool, NoKey, RestScope};
use super::leak_guard::LeakGuard;
use super::pool::Permit;
use super::relay::{Relay, StreamTimeouts};
use super::retry_budget::RetryBudget;
use super::stream_reader::{Framing, Tokens};
use crate::errors::{whole_seconds_up, ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::quota::Charge;
use awc::http::header::{HeaderName, HeaderValue};
use awc::http::{Method, StatusCode};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 500/503 and broken connections are tried again at most this many times.
pub const MAX_RETRIES: u32 = 2;
/// Other keys tried after a token-rate quota refused the request: one large
/// request is refused by every key alike, so it may not cost the whole pool.
const MAX_BUSY_FAILOVERS: u32 = 2;
/// Backoff before retry n is uniform in [0, min(CAP, BASE · 2ⁿ)] ("full jitter"),
/// which spreads a burst of failed clients instead of retrying them in step.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// `Retry-After` of an `UPSTREAM_UNAVAILABLE` the service gives up on.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

/// Which key a call uses.
#[derive(Clone)]
pub enum Credential {
    /// A key from the server's pool.
    Server,
    /// The client's own Gemini key; never swapped for a server key.
    Client(HeaderValue),
    /// This server key and no other: the call names a resource (a file, a
    /// cached content, …) that lives in this key's project, so another key
    /// would only get Gemini's 403 or 404.
    Pinned(usize),
}

impl From<Option<HeaderValue>> for Credential {
    /// The client's own key when the policy let it send one, else a server key.
    fn from(own_key: Option<HeaderValue>) -> Credential {
        own_key.map_or(Credential::Server, Credential::Client)
    }
}

/// How the key travels upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStyle {
    /// `x-goog-api-key` (native routes).
    GoogHeader,
    /// `Authorization: Bearer` (OpenAI-compatible routes).
    Bearer,
}

/// What the caller does with a successful unary answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Passes it back as it came.
    Relay,
    /// Reads it as a generateContent answer (`/gemini-proxy`); an answer
    /// without text is the attempt's failure.
    Answer,
}

/// Everything an upstream call needs, shared by the actors.
pub struct UpstreamContext {
    pub base_url: String,
    pub keys: KeyPool,
    pub leak_guard: LeakGuard,
    pub metrics: Arc<Metrics>,
    pub retry_budget: RetryBudget,
    /// The same for every stream: they come from the settings.
    pub stream_timeouts: StreamTimeouts,
    /// The proxies calls leave through, if any.
    pub egress: Egress,
    /// Which client and server key made each file, cache, batch and
    /// interaction.
    pub ownership: crate::ownership::Ownership,
}

/// The way out (an index into [`Clients`]) of a call made with this key: a
/// server key's is fixed by its place in the pool, a client's own by its hash.
pub fn route(egress: &Egress, credential: &Credential, server_key: Option<usize>) -> usize {
    match (server_key, credential) {
        (Some(index), _) => egress.route_of_server_key(index),
        (None, Credential::Client(key)) => egress.route_of_client_key(key.as_bytes()),
        (None, Credential::Server | Credential::Pinned(_)) => 0,
    }
}

/// A call to Gemini, as a route describes it.
pub struct UpstreamCall {
    pub method: Method,
    /// Built from validated parts only, without the query: `/v1beta/models/m:generateContent`.
    pub path: String,
    /// The query to forward, already validated and encoded (may be empty).
    pub query: String,
    pub credential: Credential,
    pub key_style: KeyStyle,
    /// The client's headers that may go upstream (`Content-Type` is always
    /// JSON, set with the body).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub framing: Framing,
    pub expect: Expect,
    /// The model id (without `models/`) whose quota the call uses; empty when
    /// the call names none.
    pub model: String,
    /// Whose tokens these are, and whether the answer reports any worth counting.
    pub client: Arc<str>,
    pub counts_tokens: bool,
    /// Unary calls: the whole call. Streams: the wait for the head.
    pub deadline: Instant,
    /// Charges the answer's tokens to the client's quotas when it ends.
    pub charge: Charge,
}

/// Gemini's answer, with what it means.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: ReplyBody,
    /// `None` for a success; else the request-level failure this answer is
    /// (relayed as it came on pass-through routes).
    pub failure: Option<Failure>,
    /// The answer read, for [`Expect::Answer`] calls.
    pub answer: Option<Answer>,
    /// Tokens of a unary answer (a stream's are in its [`Relay`]'s end).
    pub tokens: Option<Tokens>,
}

pub enum ReplyBody {
    Full(Bytes),
    Stream(Relay),
}

/// How a call ended, with the number of attempts it took.
pub struct CallOutcome {
    pub result: Result<Reply, ApiError>,
    pub attempts: u32,
    /// The metrics label of the model (bounded).
    pub model_label: String,
    /// The server key of the attempt that succeeded, if it used one.
    pub server_key: Option<usize>,
}

impl CallOutcome {
    /// A call that never reached Gemini.
    pub fn refused(error: ApiError) -> Self {
        CallOutcome {
            result: Err(error),
            attempts: 0,
            model_label: crate::metrics::OTHER_MODEL.to_owned(),
            server_key: None,
        }
    }

    /// A call abandoned because its client went away; nobody reads this answer.
    pub fn cancelled() -> Self {
        CallOutcome::refused(ApiError::new(
            ErrorCode::UpstreamTimeout,
            "the client went away before Gemini answered",
        ))
    }
}

/// Makes the call: attempts until one succeeds or the policy gives up. A
/// server key that hit a quota rests for that model and the next key is tried
/// at once; a refused server key leaves the rotation and the next is tried;
/// 500/503 and broken connections are retried at most [`MAX_RETRIES`] times
/// with backoff, inside the deadline, while the retry budget allows. A
/// client's own key is the only key its calls use. `permit` travels with a
/// stream until it ends.
pub async fn run(
    clients: &Clients,
    h2: &Clients<H2Pool>,
    context: &UpstreamContext,
    mut call: Box<UpstreamCall>,
    permit: Permit,
) -> CallOutcome {
    let mut permit = Some(permit);
    // Travels with a stream, like the permit; a unary answer charges below.
    let mut charge = Some(std::mem::replace(&mut call.charge, Charge::none()));
    let call_started = Instant::now();
    // Built once: every attempt goes to the same place, only the key changes.
    let url = if call.query.is_empty() {
        format!("{}{}", context.base_url, call.path)
    } else {
        format!("{}{}?{}", context.base_url, call.path, call.query)
    };
    let mut attempts = 0;
    let mut retries = 0;
    let mut busy_failovers = 0;
    let mut tried: Vec<usize> = Vec::new();
    // The last failure Gemini answered, in case the policy gives up on it;
    // boxed, as the future holds room for it and most calls have none.
    let mut last: Option<Box<(Failure, Option<ErrorAnswer>)>> = None;
    let give_up = |last: Option<Box<(Failure, Option<ErrorAnswer>)>>, fallback: ApiError| match last
        .map(|last| *last)
    {
        Some((failure, answer)) => gave_up(context, &call, failure, answer),
        None => Err(fallback),
    };
    context.retry_budget.deposit();
    loop {
        // Checked here, not left to the attempt's own timeout: a timeout polls its
        // future once before it fires, so a late attempt would still reach Gemini.
        if Instant::now() >= call.deadline {
            return CallOutcome {
                result: give_up(last, failure_error(classify::deadline_passed())),
                attempts,
                model_label: context.metrics.model_label(&call.model),
                server_key: None,
            };
        }
        let (key, index, owner) = match &call.credential {
            Credential::Client(key) => (key.clone(), None, KeyOwner::Client),
            Credential::Server | Credential::Pinned(_) => {
                match context
                    .keys
                    .pick(&call.model, &tried, pinned_key(&call.credential))
                {
                    Ok(picked) => (picked.header, Some(picked.index), KeyOwner::Server),
                    Err(reason) => {
                        let error = match (reason, last.map(|last| *last)) {
                            // Keys this request tried and moved on from: the
                            // last of their failures says why none is left.
                            (NoKey::NoneLeft, Some((failure, _))) => failure_error(failure),
                            (reason, _) => no_key_error(reason),
                        };
                        return CallOutcome {
                            result: Err(error),
                            attempts,
                            model_label: context.metrics.model_label(&call.model),
                            server_key: None,
                        };
                    }
                }
            }
        };
        attempts += 1;
        let started = Instant::now();
        let plan = Plan {
            client: clients.route(route(&context.egress, &call.credential, index)),
            h2: h2.route(route(&context.egress, &call.credential, index)),
            context,
            call: &call,
            url: &url,
            started: call_started,
        };
        // Matched at once, not named: a local kept across the backoff
        // below would have room in every state of this future.
        let (failure, answer) = match attempt(plan, key, owner, &mut permit, &mut charge).await {
            Attempt::Success(reply) => {
                let label = context.metrics.model_succeeded(&call.model);
                context
                    .metrics
                    .upstream_call(&label, "ok", started.elapsed());
                if let (true, Some(tokens)) = (call.counts_tokens, reply.tokens) {
                    context.metrics.count_tokens(&call.client, &label, tokens);
                }
                if let (Some(charge), Some(tokens)) = (charge.take(), reply.tokens) {
                    charge.tokens(tokens.total);
                }
                return CallOutcome {
                    result: Ok(reply),
                    attempts,
                    model_label: label,
                    server_key: index,
                };
            }
            Attempt::Failure { failure, answer } => (failure, answer),
        };
        let label = context.metrics.model_label(&call.model);
        context
            .metrics
            .upstream_call(&label, failure.code.as_str(), started.elapsed());

        if let Some(index) = index {
            match &failure.key {
                KeyVerdict::Rest(hits) => {
                    rest_for(context, index, &call.model, hits, failure.retry_delay);
                    tried.push(index);
                    last = Some(Box::new((failure, None)));
                    continue;
                }
                KeyVerdict::Refused => {
                    context.keys.refuse(index);
                    report_holdings(context, index);
                    tried.push(index);
                    last = Some(Box::new((failure, None)));
                    continue;
                }
                KeyVerdict::Busy if busy_failovers < MAX_BUSY_FAILOVERS => {
                    busy_failovers += 1;
                    tried.push(index);
                    last = Some(Box::new((failure, None)));
                    continue;
                }
                // A server key's quota is never relayed.
                KeyVerdict::Busy => {
                    return CallOutcome {
                        result: Err(failure_error(failure)),
                        attempts,
                        model_label: label,
                        server_key: None,
                    }
                }
                // This request's failure all the same; the key is asked by
                // itself whether it is refused.
                KeyVerdict::Suspect => context.keys.probe(index),
                KeyVerdict::Fine => {}
            }
        }
        if failure.retryable && retries < MAX_RETRIES {
            let pause = backoff(retries);
            if Instant::now() + pause < call.deadline && context.retry_budget.try_withdraw() {
                retries += 1;
                context
                    .metrics
                    .upstream_retries
                    .with_label_values(&[failure.code.as_str()])
                    .inc();
                // Gemini's answer goes back as it came if time runs out during the pause.
                last = Some(Box::new((failure, answer)));
                actix_rt::time::sleep(pause).await;
                continue;
            }
        }
        return CallOutcome {
            result: gave_up(context, &call, failure, answer),
            attempts,
            model_label: label,
            server_key: None,
        };
    }
}

/// Rests key `index` for the models a quota answer names, and always for the
/// model the call asked for: Gemini may name the model an alias resolved to,
/// and the call's model must not find the key free again at once.
fn rest_for(
    context: &UpstreamContext,
    index: usize,
    model: &str,
    hits: &[classify::QuotaHit],
    retry_delay: Option<Duration>,
) {
    let mut call_model_scope = None;
    for hit in hits {
        let named = hit.model.as_deref().unwrap_or(model);
        context.keys.rest(index, named, retry_delay, hit.scope);
        if named == model {
            call_model_scope = Some(hit.scope);
        }
    }
    if call_model_scope.is_none() {
        let scope = hits
            .iter()
            .map(|h| h.scope)
            .max_by_key(|s| *s == RestScope::Day);
        context.keys.rest(
            index,
            model,
            retry_delay,
            scope.unwrap_or(RestScope::Minute),
        );
    }
}

/// The answer to give when the policy stops at `failure`: Gemini's own
/// answer when it is about this request (or the client's own key) and holds
/// no server key; otherwise the service's own error.
fn gave_up(
    context: &UpstreamContext,
    call: &UpstreamCall,
    mut failure: Failure,
    answer: Option<ErrorAnswer>,
) -> Result<Reply, ApiError> {
    // Checked whole, before it is shortened: a cut could split a key.
    failure.message = if context.leak_guard.leaks(failure.message.as_bytes()) {
        log::warn!("Gemini's error message quoted a server key; it was withheld");
        "Gemini's message was withheld because it quoted a server key".into()
    } else {
        classify::shorten(&failure.message)
    };
    let own_key = matches!(call.credential, Credential::Client(_));
    let relayable = own_key || matches!(failure.key, KeyVerdict::Fine | KeyVerdict::Suspect);
    match answer {
        Some(answer) if relayable => {
            if context.leak_guard.leaks(&answer.body) {
                log::warn!("Gemini's error answer quoted a server key; it was withheld");
                return Err(failure_error(failure));
            }
            Ok(Reply {
                status: answer.status,
                headers: answer.headers,
                body: ReplyBody::Full(answer.body),
                failure: Some(failure),
                answer: None,
                tokens: None,
            })
        }
        _ => Err(failure_error(failure)),
    }
}

/// The key a call is pinned to, if it is.
pub fn pinned_key(credential: &Credential) -> Option<usize> {
    match credential {
        Credential::Pinned(index) => Some(*index),
        _ => None,
    }
}

/// The resources of a refused key can no longer be reached through it: the
/// operator learns how many, to judge what replacing the key costs.
pub fn report_holdings(context: &UpstreamContext, index: usize) {
    let Some(fingerprint) = context.keys.fingerprint(index) else {
        return;
    };
    let held = context.ownership.held_by(fingerprint);
    if held > 0 {
        log::warn!(
            "server key {index} was refused by Gemini while it holds {held} resources \
             (files, cached contents, batches, interactions) clients made with it; \
             they cannot be reached until the key is accepted again"
        );
    }
}

fn backoff(retry: u32) -> Duration {
    let ceiling = BACKOFF_CAP.min(BACKOFF_BASE * 2u32.saturating_pow(retry));
    ceiling.mul_f64(fastrand::f64())
}

/// The service's own error for a failure, with `Retry-After` where one helps.
pub fn failure_error(failure: Failure) -> ApiError {
    let mut error = ApiError::new(failure.code, failure.message);
    match failure.code {
        ErrorCode::QuotaError => {
            let delay = failure
                .retry_delay
                .unwrap_or(super::key_pool::DEFAULT_QUOTA_REST);
            error = error.with_retry_after(whole_seconds_up(delay).max(1));
        }
        ErrorCode::UpstreamUnavailable => {
            error = error.with_retry_after(UNAVAILABLE_RETRY_AFTER_SECS);
        }
        _ => {}
    }
    error
}

fn no_key_error(reason: NoKey) -> ApiError {
    match reason {
        NoKey::Unconfigured => ApiError::new(
            ErrorCode::NoServerKey,
            "no server Gemini key is configured; send your own model and api_key",
        ),
        NoKey::AllResting(rest) => ApiError::new(
            ErrorCode::QuotaError,
            "every server Gemini key has exhausted its quota for this model; retry later",
        )
        .with_retry_after(whole_seconds_up(rest).max(1)),
        NoKey::NoneLeft => ApiError::new(
            ErrorCode::UpstreamAuthError,
            "Gemini refused every usable server key; the operator must replace them",
        ),
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
