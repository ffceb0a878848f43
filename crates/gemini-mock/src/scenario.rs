//! Scenario names: the deterministic failures and edge cases a test can ask the mock for.
//!
//! A scenario is picked per request, so one mock serves a whole test suite. Names use only
//! `[a-z0-9-]` so that `mock-<name>` is a valid model id and works through every SDK
//! unchanged; a numeric parameter is a trailing `-N`.

/// What a request asked the mock to do instead of (or on top of) the route's normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// 200 with `promptFeedback.blockReason` and no `candidates`.
    Blocked,
    /// 200, candidate with `finishReason: SAFETY` and no content.
    SafetyFinish,
    /// 200, candidate with `finishReason: MAX_TOKENS`, no parts, thought tokens spent.
    MaxTokensEmpty,
    /// 200 with a `thought: true` part before the answer.
    Thoughts,
    /// 200 with `"candidates": []`.
    EmptyCandidates,
    /// An error body with this status; see `errors::scenario_error`.
    Error(ErrorKind),
    /// 503 for the first `failures` calls under this exact name, then normal answers.
    Flaky { name: String, failures: usize },
    /// 503 for every odd call under this name (the 1st, 3rd, …), normal answers for the
    /// others: a Gemini failing half the time, deterministically, to test retry budgets.
    FailHalf,
    /// Headers after the first-byte delay, or 5 s when that is 0.
    SlowFirstByte,
    /// Never answers; waits until the client goes away.
    Hang,
    /// Headers at once, then the body one byte every 200 ms.
    Trickle,
    /// `Content-Length` of the full body, half of it, then the connection closes.
    ResetMidBody,
    /// The connection closes before a single byte of the response is written.
    ResetBeforeHeaders,
    /// A complete HTTP message whose JSON body is cut in half.
    TruncatedJson,
    /// 200 `text/html`.
    NonJson,
    /// 200 JSON body of 33 MiB, streamed.
    Oversize,
    /// 307 to `/__mock/redirect-target`.
    Redirect,
    /// Streams: 2 good events, then an error event, then a clean end.
    StreamMidwayError,
    /// Streams: 2 good events, then the connection closes without the last chunk.
    StreamDrop,
    /// SSE framed with `\n\n` instead of `\r\n\r\n`.
    LfFraming,
}

/// Error scenarios, each one upstream answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    BadKey400,
    Geo400,
    Invalid400,
    /// A bare 403 with no ErrorInfo: this request is refused, not the key.
    Forbidden403,
    /// The 403 for a file the caller may not read.
    File403,
    /// A key-level 403 quoting the request's key.
    Suspended403,
    /// A key-level 403 naming the key's project.
    ServiceDisabled403,
    NotFound404,
    /// `None`: the configured retry delay; `Some(n)`: `"{n}s"`.
    Quota429(Option<u64>),
    Quota429NoRetry,
    /// A per-day violation with the configured retry delay.
    QuotaDay429,
    QuotaDay429NoRetry,
    Internal500,
    Unavailable503,
    Deadline504,
}

impl Scenario {
    /// Parses a scenario name (without the `mock-` prefix). Unknown names give `None`, so a
    /// `mock-anything` model simply behaves normally.
    pub fn parse(name: &str) -> Option<Scenario> {
        use ErrorKind as E;
        use Scenario as S;
        let fixed = match name {
            "blocked" => S::Blocked,
            "safety-finish" => S::SafetyFinish,
            "max-tokens-empty" => S::MaxTokensEmpty,
            "thoughts" => S::Thoughts,
            "empty-candidates" => S::EmptyCandidates,
            "400-badkey" => S::Error(E::BadKey400),
            "400-geo" => S::Error(E::Geo400),
            "400" => S::Error(E::Invalid400),
            "403" => S::Error(E::Forbidden403),
            "403-file" => S::Error(E::File403),
            "403-suspended" => S::Error(E::Suspended403),
            "403-service-disabled" => S::Error(E::ServiceDisabled403),
            "404" => S::Error(E::NotFound404),
            "429" => S::Error(E::Quota429(None)),
            "429-noretry" => S::Error(E::Quota429NoRetry),
            "429-day" => S::Error(E::QuotaDay429),
            "429-day-noretry" => S::Error(E::QuotaDay429NoRetry),
            "500" => S::Error(E::Internal500),
            "503" => S::Error(E::Unavailable503),
            "504" => S::Error(E::Deadline504),
            "slow-first-byte" => S::SlowFirstByte,
            "hang" => S::Hang,
            "trickle" => S::Trickle,
            "reset-mid-body" => S::ResetMidBody,
            "reset-before-headers" => S::ResetBeforeHeaders,
            "truncated-json" => S::TruncatedJson,
            "non-json" => S::NonJson,
            "oversize" => S::Oversize,
            "redirect" => S::Redirect,
            "stream-midway-error" => S::StreamMidwayError,
            "stream-drop" => S::StreamDrop,
            "lf-framing" => S::LfFraming,
            "fail-half" => S::FailHalf,
            _ => return Self::parse_numbered(name),
        };
        Some(fixed)
    }

    fn parse_numbered(name: &str) -> Option<Scenario> {
        let (stem, n) = name.rsplit_once('-')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = n.parse().ok()?;
        match stem {
            "429" => Some(Scenario::Error(ErrorKind::Quota429(Some(n)))),
            "flaky" => Some(Scenario::Flaky {
                name: name.to_owned(),
                failures: usize::try_from(n).ok()?,
            }),
            _ => None,
        }
    }

    /// The scenario named by a model id `mock-<name>`.
    pub fn from_model(model: &str) -> Option<Scenario> {
        model.strip_prefix("mock-").and_then(Scenario::parse)
    }

    /// The scenario named by a prompt starting with `[mock:<name>]`.
    pub fn from_prompt(text: &str) -> Option<Scenario> {
        let rest = text.trim_start().strip_prefix("[mock:")?;
        let (name, _) = rest.split_once(']')?;
        Scenario::parse(name.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_and_numbered_names() {
        assert_eq!(Scenario::parse("blocked"), Some(Scenario::Blocked));
        assert_eq!(
            Scenario::parse("429-7"),
            Some(Scenario::Error(ErrorKind::Quota429(Some(7))))
        );
        assert_eq!(
            Scenario::parse("flaky-2"),
            Some(Scenario::Flaky {
                name: "flaky-2".into(),
                failures: 2
            })
        );
        assert_eq!(Scenario::parse("flaky-"), None);
        assert_eq!(Scenario::parse("flaky-x"), None);
        assert_eq!(Scenario::parse("fail-half"), Some(Scenario::FailHalf));
        assert_eq!(
            Scenario::parse("429-day-noretry"),
            Some(Scenario::Error(ErrorKind::QuotaDay429NoRetry))
        );
        assert_eq!(
            Scenario::parse("403-service-disabled"),
            Some(Scenario::Error(ErrorKind::ServiceDisabled403))
        );
        assert_eq!(Scenario::parse("nonsense"), None);
    }

    #[test]
    fn reads_model_ids_and_prompt_prefixes() {
        assert_eq!(Scenario::from_model("mock-503"), Scenario::parse("503"));
        assert_eq!(Scenario::from_model("gemini-2.5-flash"), None);
        assert_eq!(
            Scenario::from_prompt("[mock:hang] hi"),
            Some(Scenario::Hang)
        );
        assert_eq!(Scenario::from_prompt("hi [mock:hang]"), None);
    }
}
