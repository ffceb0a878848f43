//! Parsing and validating request bodies the way upstream does.
//!
//! Upstream parses protobuf JSON, which accepts both lowerCamelCase and snake_case field
//! names, and real SDKs send a mix; so every multi-word field takes both spellings. Only
//! the fields the mock needs are read: the rest is ignored, not re-serialised.

use serde::Deserialize;

use super::errors::ApiError;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Content {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Option<Vec<Part>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Part {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(default, rename = "fileData", alias = "file_data")]
    pub file_data: Option<FileData>,
}

/// A part's reference to an uploaded file (SDKs mix the casings: `fileData.file_uri`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileData {
    #[serde(default, rename = "fileUri", alias = "file_uri")]
    pub file_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GenerateRequest {
    #[serde(default)]
    pub contents: Option<Vec<Content>>,
    #[serde(default, rename = "systemInstruction", alias = "system_instruction")]
    pub system_instruction: Option<Content>,
    #[serde(default, rename = "cachedContent", alias = "cached_content")]
    pub cached_content: Option<String>,
    /// Only whether they are there: Gemini refuses them beside a `cachedContent`.
    #[serde(default)]
    pub tools: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "toolConfig", alias = "tool_config")]
    pub tool_config: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CountTokensRequest {
    #[serde(default)]
    pub contents: Option<Vec<Content>>,
    #[serde(
        default,
        rename = "generateContentRequest",
        alias = "generate_content_request"
    )]
    pub generate_content_request: Option<GenerateRequest>,
    #[serde(default, rename = "cachedContent", alias = "cached_content")]
    pub cached_content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EmbedRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub content: Option<Content>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct BatchEmbedRequest {
    #[serde(default)]
    pub requests: Option<Vec<EmbedRequest>>,
}

/// What the mock needs from a prompt: the text to echo, the token estimate, and the text
/// that may carry a `[mock:<name>]` scenario prefix.
#[derive(Debug)]
pub(crate) struct Prompt {
    /// The last user content's text parts, concatenated.
    pub last_user_text: String,
    /// The first text part of the first user content.
    pub first_user_text: Option<String>,
    /// Whitespace-separated words in every text of the request, at least 1.
    pub tokens: u32,
}

/// Stored resources a request names, which the caller's project must hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct References<'a> {
    pub cached_content: Option<&'a str>,
    /// Every `fileUri` of every part of every content, in order.
    pub file_uris: Vec<&'a str>,
    /// `systemInstruction`, `tools` or `toolConfig` is set: a cached content must hold
    /// those itself.
    pub sets_config: bool,
}

/// Parses JSON, answering upstream's 400 when it is not.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
}

pub(crate) fn count_words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

fn is_user(role: Option<&str>) -> bool {
    matches!(role, None | Some("") | Some("user"))
}

fn texts(content: &Content) -> impl Iterator<Item = &str> {
    content
        .parts
        .iter()
        .flatten()
        .filter(|p| p.thought != Some(true))
        .filter_map(|p| p.text.as_deref())
}

impl GenerateRequest {
    /// Upstream's checks, in its order: contents present, then each content's role and parts.
    pub fn validate(&self) -> Result<(), ApiError> {
        let contents = match &self.contents {
            Some(c) if !c.is_empty() => c,
            _ => {
                return Err(ApiError::invalid(
                    "* GenerateContentRequest.contents: contents is not specified\n",
                ))
            }
        };
        for (i, content) in contents.iter().enumerate() {
            if let Some(role) = content.role.as_deref() {
                if !role.is_empty() && role != "user" && role != "model" {
                    return Err(ApiError::invalid("Please use a valid role: user, model."));
                }
            }
            if content.parts.as_ref().is_none_or(Vec::is_empty) {
                return Err(ApiError::invalid(format!(
                    "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
                )));
            }
        }
        Ok(())
    }

    pub fn references(&self) -> References<'_> {
        let file_uris = self
            .contents
            .iter()
            .flatten()
            .chain(self.system_instruction.iter())
            .flat_map(|c| c.parts.iter().flatten())
            .filter_map(|p| p.file_data.as_ref()?.file_uri.as_deref())
            .collect();
        References {
            cached_content: self.cached_content.as_deref(),
            file_uris,
            sets_config: self.system_instruction.is_some()
                || self.tools.is_some()
                || self.tool_config.is_some(),
        }
    }

    pub fn prompt(&self) -> Prompt {
        let contents = self.contents.as_deref().unwrap_or_default();
        let last_user_text = contents
            .iter()
            .rev()
            .find(|c| is_user(c.role.as_deref()))
            .map(|c| texts(c).collect::<String>())
            .unwrap_or_default();
        let first_user_text = contents
            .iter()
            .find(|c| is_user(c.role.as_deref()))
            .and_then(|c| texts(c).next())
            .map(str::to_owned);
        let words: u32 = contents
            .iter()
            .chain(self.system_instruction.iter())
            .flat_map(texts)
            .map(count_words)
            .sum();
        Prompt {
            last_user_text,
            first_user_text,
            tokens: words.max(1),
        }
    }
}

impl CountTokensRequest {
    /// The request whose tokens are counted: `contents`, or the embedded generate request.
    /// A `cachedContent` beside `contents` is kept, so the reference is checked too.
    pub fn into_generate(self) -> Result<GenerateRequest, ApiError> {
        match (self.contents, self.generate_content_request) {
            (Some(_), Some(_)) => Err(ApiError::invalid("Request contains an invalid argument.")),
            (None, Some(mut inner)) => {
                inner.cached_content = inner.cached_content.or(self.cached_content);
                Ok(inner)
            }
            (contents, None) => Ok(GenerateRequest {
                contents,
                cached_content: self.cached_content,
                ..GenerateRequest::default()
            }),
        }
    }
}

impl EmbedRequest {
    pub fn text(&self) -> String {
        self.content
            .as_ref()
            .map(|c| texts(c).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}

/// A deterministic 8-dimensional vector for a text, so tests can compare embeddings.
pub(crate) fn embed(text: &str) -> Vec<f32> {
    (0u64..8)
        .map(|dim| {
            // FNV-1a with the dimension as seed: stable across runs and platforms.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ dim;
            for b in text.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            let milli = i32::try_from(h % 2001).unwrap_or(0) - 1000;
            milli as f32 / 1000.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> GenerateRequest {
        parse_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn echoes_the_last_user_turn_and_counts_all_words() {
        let r = req(
            r#"{"contents":[{"role":"user","parts":[{"text":"hi there"}]},
            {"role":"model","parts":[{"text":"yo"}]},
            {"role":"user","parts":[{"text":"again "},{"text":"now"}]}],
            "system_instruction":{"parts":[{"text":"be brief"}]}}"#,
        );
        r.validate().unwrap();
        let p = r.prompt();
        assert_eq!(p.last_user_text, "again now");
        assert_eq!(p.first_user_text.as_deref(), Some("hi there"));
        assert_eq!(p.tokens, 7);
    }

    #[test]
    fn rejects_like_upstream() {
        let msg = |j: &str| req(j).validate().unwrap_err().message;
        assert_eq!(
            msg(r#"{"contents":[]}"#),
            "* GenerateContentRequest.contents: contents is not specified\n"
        );
        assert_eq!(
            msg(r#"{"contents":[{"role":"system","parts":[{"text":"x"}]}]}"#),
            "Please use a valid role: user, model."
        );
        assert_eq!(
            msg(r#"{"contents":[{"parts":[{"text":"x"}]},{"role":"model","parts":[]}]}"#),
            "* GenerateContentRequest.contents[1].parts: contents.parts must not be empty.\n"
        );
    }

    #[test]
    fn references_come_from_every_part_of_every_content_in_either_casing() {
        let r = req(r#"{"contents":[
            {"parts":[{"text":"a"},{"fileData":{"fileUri":"files/one"}}]},
            {"role":"model","parts":[{"file_data":{"file_uri":"files/two"}}]},
            {"parts":[{"fileData":{"file_uri":"files/three","mime_type":"text/plain"}}]}],
            "systemInstruction":{"parts":[{"fileData":{"fileUri":"files/four"}}]},
            "cached_content":"cachedContents/c1"}"#);
        assert_eq!(
            r.references(),
            References {
                cached_content: Some("cachedContents/c1"),
                file_uris: vec!["files/one", "files/two", "files/three", "files/four"],
                sets_config: true,
            }
        );
        let plain = req(r#"{"contents":[{"parts":[{"text":"a"}]}]}"#);
        assert_eq!(plain.references(), References::default());
    }

    #[test]
    fn embeddings_are_deterministic() {
        assert_eq!(embed("a"), embed("a"));
        assert_ne!(embed("a"), embed("b"));
        assert_eq!(embed("a").len(), 8);
    }
}
