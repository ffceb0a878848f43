//! Model ids, validated once, so that nothing a client sends can change the upstream path.
//!
//! The grammar is docs/gemini-wire.md#model-ids: `[models/]<id>` where the id is lower-case
//! alphanumeric runs joined by single `.` or `-`, or `tunedModels/<name>` with the
//! tuned-model name grammar. Anything else (`/`, `..`, `:`, `?`, `#`, `%`,
//! whitespace, upper case) is refused.

use std::fmt;

/// The longest model id accepted, prefix included.
pub const MAX_MODEL_ID_LEN: usize = 128;
/// Tuned-model names are at most 40 characters (Gemini's documented grammar).
const MAX_TUNED_NAME_LEN: usize = 40;

/// The upstream collection a model lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collection {
    Models,
    TunedModels,
}

impl Collection {
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::Models => "models",
            Collection::TunedModels => "tunedModels",
        }
    }
}

/// A model id that passed validation: safe to put in an upstream URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelId {
    collection: Collection,
    /// The id without its collection prefix, e.g. `gemini-2.5-flash`.
    name: String,
}

/// Why a model id was refused; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelIdError {
    #[error("the model id is empty")]
    Empty,
    #[error("the model id is longer than {MAX_MODEL_ID_LEN} characters")]
    TooLong,
    #[error("the model id is not a valid Gemini model id (lower-case letters, digits, and single '.' or '-' between them, optionally prefixed by 'models/'; or 'tunedModels/<name>')")]
    Grammar,
}

impl ModelId {
    /// Validates a model id as a client or an operator wrote it.
    pub fn parse(raw: &str) -> Result<ModelId, ModelIdError> {
        if raw.is_empty() {
            return Err(ModelIdError::Empty);
        }
        if raw.len() > MAX_MODEL_ID_LEN {
            return Err(ModelIdError::TooLong);
        }
        if let Some(name) = raw.strip_prefix("tunedModels/") {
            return if is_tuned_name(name) {
                Ok(ModelId {
                    collection: Collection::TunedModels,
                    name: name.to_owned(),
                })
            } else {
                Err(ModelIdError::Grammar)
            };
        }
        let name = raw.strip_prefix("models/").unwrap_or(raw);
        if is_base_name(name) {
            Ok(ModelId {
                collection: Collection::Models,
                name: name.to_owned(),
            })
        } else {
            Err(ModelIdError::Grammar)
        }
    }

    pub fn collection(&self) -> Collection {
        self.collection
    }

    /// The id without a `models/` prefix: what allow-lists and metrics compare.
    /// Tuned models keep their prefix, since their names are a separate namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path segment upstream, e.g. `models/gemini-2.5-flash`.
    pub fn resource(&self) -> String {
        format!("{}/{}", self.collection.as_str(), self.name)
    }

    /// The id as allow-lists and the response show it: bare for models,
    /// `tunedModels/<name>` for tuned models.
    pub fn display_id(&self) -> String {
        match self.collection {
            Collection::Models => self.name.clone(),
            Collection::TunedModels => self.resource(),
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.collection {
            Collection::Models => f.write_str(&self.name),
            Collection::TunedModels => write!(f, "tunedModels/{}", self.name),
        }
    }
}

/// `[a-z0-9]+([.-][a-z0-9]+)*`
fn is_base_name(name: &str) -> bool {
    let mut previous_was_separator = true; // forbids a leading separator
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' => previous_was_separator = false,
            b'.' | b'-' if !previous_was_separator => previous_was_separator = true,
            _ => return false,
        }
    }
    !name.is_empty() && !previous_was_separator
}

/// `[a-z]([a-z0-9-]{0,38}[a-z0-9])?`
fn is_tuned_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes.len() <= MAX_TUNED_NAME_LEN
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_model_ids() {
        for id in [
            "gemini-2.5-flash",
            "models/gemini-2.5-pro",
            "gemma-3-27b-it",
            "gemma-3n-e4b-it",
            "gemini-2.5-flash-preview-05-20",
            "text-embedding-004",
            "gemini-2.5-flash-1b0689e3-9773-43b4-97eb-c8140d5f183b",
            "tunedModels/my-model-x1",
            "tunedModels/sentence-translation-u3b7m",
        ] {
            assert!(ModelId::parse(id).is_ok(), "{id} should be accepted");
        }
    }

    #[test]
    fn refuses_ids_that_could_change_the_upstream_path() {
        let long = "a".repeat(129);
        for (id, why) in [
            ("", "empty"),
            ("../x", "dot-dot segment"),
            ("a/b", "a slash"),
            ("a:b", "a method separator"),
            ("a?b", "a query"),
            ("a#b", "a fragment"),
            ("%2e%2e", "percent-encoding"),
            ("Gemini-2.5-Flash", "upper case"),
            ("gemini 2.5", "whitespace"),
            ("gemini..flash", "a doubled separator"),
            ("gemini-", "a trailing separator"),
            ("-gemini", "a leading separator"),
            ("models/", "a bare prefix"),
            ("models/models/x", "a doubled prefix"),
            ("tunedModels/", "an empty tuned name"),
            ("tunedModels/9abc", "a tuned name starting with a digit"),
            ("tunedModels/a.b", "a dot in a tuned name"),
            (long.as_str(), "over 128 characters"),
        ] {
            assert!(
                ModelId::parse(id).is_err(),
                "{why}: {id:?} should be refused"
            );
        }
    }

    #[test]
    fn strips_the_models_prefix_for_comparison() {
        let id = ModelId::parse("models/gemini-2.5-pro").unwrap();
        assert_eq!(id.name(), "gemini-2.5-pro");
        assert_eq!(id.resource(), "models/gemini-2.5-pro");
        let tuned = ModelId::parse("tunedModels/my-model").unwrap();
        assert_eq!(tuned.display_id(), "tunedModels/my-model");
        assert_eq!(tuned.resource(), "tunedModels/my-model");
    }
}
