//! One generateContent request to Gemini: attempts across server keys, bounded
//! retries with full-jitter backoff, all inside one deadline (SPEC §5).

use super::classify::{self, Answer, Failure, KeyOwner, KeyVerdict};
use super::key_pool::{KeyPool, NoKey};
use super::retry_budget::RetryBudget;
use crate::errors::{whole_seconds_up, ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::model_id::ModelId;
use awc::http::header::{HeaderValue, CONTENT_TYPE};
use awc::Client;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 500/503 and broken connections are tried again at most this many times.
pub const MAX_RETRIES: u32 = 2;
/// Backoff before retry n is uniform in [0, min(CAP, BASE · 2ⁿ)] ("full jitter"),
/// which spreads a burst of failed clients instead of retrying them in step.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// Which key a call uses.
#[derive(Clone)]
pub enum Credential {
    /// A key from the server's pool.
    Server,
    /// The client's own Gemini key; never swapped for a server key.
    Client(HeaderValue),
}

/// Everything an upstream call needs, shared by the actors.
pub struct UpstreamContext {
    pub base_url: String,
    pub keys: KeyPool,
    pub metrics: Arc<Metrics>,
    pub retry_budget: RetryBudget,
}

/// A generateContent call to make.
pub struct GenerateCall {
    pub model: ModelId,
    pub credential: Credential,
    pub body: Bytes,
    pub deadline: Instant,
}

/// How a call ended, with the number of attempts it took.
#[derive(Debug)]
pub struct CallOutcome<T = Answer> {
    pub result: Result<T, ApiError>,
    pub attempts: u32,
    /// The metrics label of the model (bounded).
    pub model_label: String,
}

impl<T> CallOutcome<T> {
    /// A call that never reached Gemini.
    pub fn refused(error: ApiError) -> Self {
        CallOutcome {
            result: Err(error),
            attempts: 0,
            model_label: crate::metrics::OTHER_MODEL.to_owned(),
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

/// The result of one attempt.
pub enum Attempt<T> {
    Success(T),
    /// A failed attempt; `answer` is what to give the client if the service
    /// gives up here (pass-through routes return Gemini's own answer).
    Failure {
        failure: Failure,
        answer: Option<T>,
    },
}

/// Makes attempts until one succeeds or the policy gives up: a server key that
/// hit its quota rests and the next key is tried at once; a rejected server key
/// leaves the rotation; 500/503 and broken connections are retried at most
/// [`MAX_RETRIES`] times with backoff, inside `deadline`, while the retry
/// budget allows. A client's own key is
/// the only key its calls use.
pub async fn with_attempts<T, F, Fut>(
    context: &UpstreamContext,
    credential: &Credential,
    model: &str,
    deadline: Instant,
    mut attempt: F,
) -> CallOutcome<T>
where
    F: FnMut(HeaderValue, KeyOwner) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut attempts = 0;
    let mut retries = 0;
    let mut tried: Vec<usize> = Vec::new();
    let mut last_answer: Option<T> = None;
    context.retry_budget.deposit();
    loop {
        // Checked here, not left to the attempt's own timeout: a timeout polls its
        // future once before it fires, so a late attempt would still reach Gemini.
        if Instant::now() >= deadline {
            return CallOutcome {
                result: last_answer.ok_or_else(|| into_api_error(classify::deadline_passed())),
                attempts,
                model_label: context.metrics.model_label(model),
            };
        }
        let (key, index, owner) = match credential {
            Credential::Client(key) => (key.clone(), None, KeyOwner::Client),
            Credential::Server => match context.keys.pick(&tried) {
                Ok(picked) => (picked.header, Some(picked.index), KeyOwner::Server),
                Err(reason) => {
                    return CallOutcome {
                        result: last_answer.ok_or_else(|| no_key_error(reason)),
                        attempts,
                        model_label: context.metrics.model_label(model),
                    }
                }
            },
        };
        attempts += 1;
        let started = Instant::now();
        let outcome = attempt(key, owner).await;
        let elapsed = started.elapsed();
        let (failure, answer) = match outcome {
            Attempt::Success(value) => {
                let label = context.metrics.model_succeeded(model);
                context.metrics.upstream_call(&label, "ok", elapsed);
                return CallOutcome {
                    result: Ok(value),
                    attempts,
                    model_label: label,
                };
            }
            Attempt::Failure { failure, answer } => (failure, answer),
        };
        let label = context.metrics.model_label(model);
        context
            .metrics
            .upstream_call(&label, failure.code.as_str(), elapsed);

        if let Some(index) = index {
            let moved_on = match failure.key {
                KeyVerdict::Rest(rest) => {
                    context.keys.rest(index, rest);
                    true
                }
                KeyVerdict::Rejected => {
                    context.keys.reject(index);
                    true
                }
                KeyVerdict::Fine => false,
            };
            if moved_on {
                tried.push(index);
                last_answer = answer;
                continue;
            }
        }
        if failure.retryable && retries < MAX_RETRIES {
            let pause = backoff(retries);
            if Instant::now() + pause < deadline && context.retry_budget.try_withdraw() {
                retries += 1;
                context
                    .metrics
                    .upstream_retries
                    .with_label_values(&[failure.code.as_str()])
                    .inc();
                // Gemini's answer goes back as it came if time runs out during the pause.
                last_answer = answer;
                actix_rt::time::sleep(pause).await;
                continue;
            }
        }
        return CallOutcome {
            result: answer.ok_or_else(|| into_api_error(failure)),
            attempts,
            model_label: label,
        };
    }
}

/// A generateContent call for `/gemini-proxy`, its answer classified.
pub async fn generate(
    client: &Client,
    context: &UpstreamContext,
    call: GenerateCall,
) -> CallOutcome {
    let url = format!(
        "{}/v1beta/{}:generateContent",
        context.base_url,
        call.model.resource()
    );
    let model = call.model.display_id();
    with_attempts(
        context,
        &call.credential,
        &model,
        call.deadline,
        |key, owner| {
            let exchange = attempt(client, &url, key, call.body.clone(), call.deadline, owner);
            async move {
                match exchange.await {
                    Ok(answer) => Attempt::Success(answer),
                    Err(failure) => Attempt::Failure {
                        failure,
                        answer: None,
                    },
                }
            }
        },
    )
    .await
}

async fn attempt(
    client: &Client,
    url: &str,
    key: HeaderValue,
    body: Bytes,
    deadline: Instant,
    owner: KeyOwner,
) -> Result<Answer, Failure> {
    let deadline = tokio::time::Instant::from_std(deadline);
    let exchange = async {
        let mut response = client
            .post(url)
            .insert_header(("x-goog-api-key", key))
            .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
            .send_body(body)
            .await
            .map_err(|e| {
                log::debug!("upstream call failed before an answer: {e}");
                classify::classify_send_error(&e)
            })?;
        let status = response.status().as_u16();
        let body = response
            .body()
            .limit(super::client::MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| {
                log::debug!("upstream answer could not be read: {e}");
                classify::classify_payload_error(&e)
            })?;
        classify::classify_answer(status, &body, owner)
    };
    tokio::time::timeout_at(deadline, exchange)
        .await
        .unwrap_or_else(|_| Err(classify::deadline_passed()))
}

fn backoff(retry: u32) -> Duration {
    let ceiling = BACKOFF_CAP.min(BACKOFF_BASE * 2u32.saturating_pow(retry));
    ceiling.mul_f64(fastrand::f64())
}

fn into_api_error(failure: Failure) -> ApiError {
    let mut error = ApiError::new(failure.code, failure.message);
    if failure.code == ErrorCode::QuotaError {
        let delay = failure.retry_delay.unwrap_or(classify::DEFAULT_QUOTA_REST);
        error = error.with_retry_after(whole_seconds_up(delay).max(1));
    } else if failure.code == ErrorCode::UpstreamUnavailable {
        error = error.with_retry_after(1);
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
            "every server Gemini key has exhausted its quota; retry later",
        )
        .with_retry_after(whole_seconds_up(rest).max(1)),
        NoKey::NoneLeft => ApiError::new(
            ErrorCode::UpstreamAuthError,
            "Gemini rejected every usable server key; the operator must replace them",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use std::cell::Cell;

    fn context(keys: usize) -> UpstreamContext {
        let metrics = Arc::new(Metrics::new().unwrap());
        let keys: Vec<SecretString> = (0..keys)
            .map(|i| SecretString::from(format!("key-{i}")))
            .collect();
        UpstreamContext {
            base_url: "http://127.0.0.1:9".to_owned(),
            keys: KeyPool::new(&keys, metrics.clone()),
            metrics,
            retry_budget: RetryBudget::default(),
        }
    }

    #[actix_rt::test]
    async fn no_attempt_starts_after_the_deadline() {
        let context = context(2);
        let deadline = Instant::now() + Duration::from_millis(50);
        let calls = Cell::new(0);
        let outcome = with_attempts(&context, &Credential::Server, "m", deadline, |_, _| {
            calls.set(calls.get() + 1);
            async move {
                // Key 0's quota answer arrives as the deadline passes: the key
                // rests and key 1 is free, but there is no time left to use it.
                tokio::time::sleep_until(deadline.into()).await;
                Attempt::<()>::Failure {
                    failure: classify::classify_failure(429, b"{}", KeyOwner::Server),
                    answer: None,
                }
            }
        })
        .await;
        assert_eq!(calls.get(), 1, "an attempt started after the deadline");
        assert_eq!(outcome.attempts, 1);
        let error = outcome.result.unwrap_err();
        assert_eq!(error.code, ErrorCode::UpstreamTimeout);
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        for retry in 0..10 {
            let pause = backoff(retry);
            assert!(pause <= BACKOFF_CAP, "{pause:?}");
            assert!(pause <= BACKOFF_BASE * 2u32.pow(retry.min(5)));
        }
    }
}
