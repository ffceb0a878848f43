//! The body of `POST /gemini-proxy`: parsed once, checked in the documented order (docs/api.md#check-order),
//! with an error that says exactly what to fix.

use crate::errors::{ApiError, ErrorCode};
use crate::model_id::{ModelId, ModelIdError};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBody<'a> {
    #[serde(borrow, default)]
    prompt: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    api_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    system_instruction: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    generation_config: Option<&'a RawValue>,
}

/// A request body that passed every check that does not depend on the client.
#[derive(Debug)]
pub struct ProxyRequest<'a> {
    pub prompt: Cow<'a, str>,
    pub system_instruction: Option<Cow<'a, str>>,
    /// An object, passed to Gemini as written.
    pub generation_config: Option<&'a RawValue>,
    pub target: Target<'a>,
}

/// Which model and key the call uses.
#[derive(Debug)]
pub enum Target<'a> {
    /// The server's default model and key.
    ServerDefault,
    /// The client's own model and Gemini key.
    Own {
        model: ModelId,
        api_key: Cow<'a, str>,
    },
}

/// What is wrong with a body; each variant maps to one error code.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("the request body must be a JSON object")]
    NotAnObject,
    #[error("the request body is not valid JSON: {0}")]
    Syntax(String),
    #[error("{0}")]
    Field(String),
    #[error("`prompt` is required")]
    PromptMissing,
    #[error("`prompt` must not be blank")]
    PromptBlank,
    #[error("`prompt` has {actual} characters; the limit is {limit}")]
    PromptTooLong { actual: usize, limit: usize },
    #[error("`api_key` must be a non-empty key of visible ASCII characters")]
    BadApiKey,
    #[error(
        "`model` and `api_key` must be given together (or neither, for the server's defaults)"
    )]
    ModelAndKey,
    #[error("`model`: {0}")]
    Model(#[from] ModelIdError),
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let code = match error {
            ValidationError::NotAnObject | ValidationError::Syntax(_) => ErrorCode::InvalidJson,
            ValidationError::PromptTooLong { .. } => ErrorCode::PromptTooLong,
            ValidationError::ModelAndKey => ErrorCode::ModelAndKeyRequired,
            ValidationError::Model(_) => ErrorCode::InvalidModel,
            ValidationError::Field(_)
            | ValidationError::PromptMissing
            | ValidationError::PromptBlank
            | ValidationError::BadApiKey => ErrorCode::InvalidRequest,
        };
        ApiError::new(code, error.to_string())
    }
}

impl<'a> ProxyRequest<'a> {
    /// Parses and checks a body; `max_prompt_chars` counts Unicode characters.
    pub fn parse(body: &'a [u8], max_prompt_chars: usize) -> Result<Self, ValidationError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) => ValidationError::NotAnObject,
                    Err(e) => ValidationError::Syntax(position_only(&e)),
                },
            );
        }
        let raw: RawBody<'a> = serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                ValidationError::Field(redact_names(&redact_values(&e.to_string())))
            } else {
                ValidationError::Syntax(position_only(&e))
            }
        })?;
        if let Some(config) = raw.generation_config {
            if !config.get().starts_with('{') {
                return Err(ValidationError::Field(
                    "`generation_config` must be a JSON object".into(),
                ));
            }
            if nesting_depth(config.get()) > MAX_CONFIG_DEPTH {
                return Err(ValidationError::Field(format!(
                    "`generation_config` is nested deeper than {MAX_CONFIG_DEPTH} levels"
                )));
            }
        }
        let prompt = raw.prompt.ok_or(ValidationError::PromptMissing)?;
        if prompt.trim().is_empty() {
            return Err(ValidationError::PromptBlank);
        }
        // Counting stops just past the limit, so a huge prompt costs no more than a legal one.
        let counted = prompt.chars().take(max_prompt_chars + 1).count();
        if counted > max_prompt_chars {
            return Err(ValidationError::PromptTooLong {
                actual: prompt.chars().count(),
                limit: max_prompt_chars,
            });
        }
        if let Some(key) = &raw.api_key {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ValidationError::BadApiKey);
            }
        }
        let target = match (raw.model, raw.api_key) {
            (None, None) => Target::ServerDefault,
            (Some(model), Some(api_key)) => Target::Own {
                model: ModelId::parse(&model)?,
                api_key,
            },
            _ => return Err(ValidationError::ModelAndKey),
        };
        Ok(ProxyRequest {
            prompt,
            system_instruction: raw.system_instruction,
            generation_config: raw.generation_config,
            target,
        })
    }
}

/// Gemini's generation config is a few levels deep; a deeper one is refused
/// here rather than passed on (serde does not bound nesting inside a raw value).
const MAX_CONFIG_DEPTH: usize = 32;

/// The deepest nesting of arrays and objects in valid JSON text.
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in json.bytes() {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// serde's syntax errors quote no input, only where it broke.
fn position_only(error: &serde_json::Error) -> String {
    format!("at line {} column {}", error.line(), error.column())
}

/// serde names an unknown field as the client wrote it, which could be a key
/// pasted as a name; the message keeps the list of fields that are allowed.
fn redact_names(message: &str) -> String {
    match (message.find("unknown field `"), message.find("`, expected")) {
        (Some(start), Some(end)) if start < end => {
            format!("{}unknown field{}", &message[..start], &message[end + 1..])
        }
        _ => message.to_owned(),
    }
}

/// serde's type errors quote string values (`invalid type: string "…"`); those
/// could be a prompt or a key sent in the wrong field, so they are cut out.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        out.push_str(&rest[..start + "string".len()]);
        let after = &rest[start + "string \"".len()..];
        rest = match after.find("\", expected") {
            Some(end) => &after[end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> ErrorCode {
        ApiError::from(ProxyRequest::parse(body.as_bytes(), 10).unwrap_err()).code
    }

    #[test]
    fn each_problem_gets_its_code() {
        for (body, expected, why) in [
            ("[1]", ErrorCode::InvalidJson, "an array"),
            ("\"hi\"", ErrorCode::InvalidJson, "a string"),
            ("{\"prompt\":", ErrorCode::InvalidJson, "truncated"),
            ("", ErrorCode::InvalidJson, "empty"),
            ("{}", ErrorCode::InvalidRequest, "no prompt"),
            (
                "{\"prompt\":\"  \"}",
                ErrorCode::InvalidRequest,
                "blank prompt",
            ),
            (
                "{\"prompt\":1}",
                ErrorCode::InvalidRequest,
                "a number prompt",
            ),
            (
                "{\"prompt\":\"x\",\"extra\":1}",
                ErrorCode::InvalidRequest,
                "an unknown field",
            ),
            (
                "{\"prompt\":\"x\",\"prompt\":\"y\"}",
                ErrorCode::InvalidRequest,
                "a duplicate field",
            ),
            (
                "{\"prompt\":\"x\",\"generation_config\":[1]}",
                ErrorCode::InvalidRequest,
                "a non-object config",
            ),
            (
                "{\"prompt\":\"x\",\"api_key\":\"\",\"model\":\"m\"}",
                ErrorCode::InvalidRequest,
                "an empty key",
            ),
            (
                "{\"prompt\":\"ééééééééééé\"}",
                ErrorCode::PromptTooLong,
                "11 characters",
            ),
            (
                "{\"prompt\":\"x\",\"model\":\"gemini-2.5-flash\"}",
                ErrorCode::ModelAndKeyRequired,
                "model only",
            ),
            (
                "{\"prompt\":\"x\",\"api_key\":\"k\"}",
                ErrorCode::ModelAndKeyRequired,
                "key only",
            ),
            (
                "{\"prompt\":\"x\",\"model\":\"\",\"api_key\":\"k\"}",
                ErrorCode::InvalidModel,
                "an empty model",
            ),
            (
                "{\"prompt\":\"x\",\"model\":\"../x\",\"api_key\":\"k\"}",
                ErrorCode::InvalidModel,
                "a path",
            ),
        ] {
            assert_eq!(code(body), expected, "{why}: {body}");
        }
    }

    #[test]
    fn null_counts_as_absent() {
        let request = ProxyRequest::parse(
            br#"{"prompt":"hi","model":null,"api_key":null,"generation_config":null}"#,
            10,
        )
        .unwrap();
        assert!(matches!(request.target, Target::ServerDefault));
        assert!(request.generation_config.is_none());
    }

    #[test]
    fn a_deep_generation_config_is_refused() {
        let deep = format!(
            "{{\"prompt\":\"x\",\"generation_config\":{{\"a\":{}1{}}}}}",
            "[".repeat(40),
            "]".repeat(40)
        );
        assert_eq!(code(&deep), ErrorCode::InvalidRequest);
        assert_eq!(nesting_depth(r#"{"a":"[[[[","b":[{"c":1}]}"#), 3);
    }

    #[test]
    fn an_unknown_field_is_not_quoted() {
        let err = ProxyRequest::parse(br#"{"prompt":"x","AIzaSECRETKEY":1}"#, 10)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET"), "{err}");
        assert!(
            err.contains("unknown field") && err.contains("prompt"),
            "{err}"
        );
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let ten = format!("{{\"prompt\":\"{}\"}}", "é".repeat(10));
        assert!(ProxyRequest::parse(ten.as_bytes(), 10).is_ok());
    }

    #[test]
    fn type_errors_do_not_echo_string_values() {
        let err = ProxyRequest::parse(br#"{"prompt":"x","generation_config":"AIzaSECRET"}"#, 10)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("SECRET"), "{err}");
        let err = ProxyRequest::parse(br#"{"prompt":["AIzaSECRET"]}"#, 10)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("SECRET"), "{err}");
    }
}
