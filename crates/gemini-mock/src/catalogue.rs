//! The mock's model catalogue: which ids exist, and the `Model` resources that
//! `GET /{v}/models` and `GET /{v}/models/{id}` return.
//!
//! Any `gemini-*`, `gemma-*` or `text-embedding-*` id is accepted so tests need not track
//! Google's line-up; the listed catalogue is the small fixed set the docs name. The
//! `-latest` aliases exist only on v1beta, as upstream (docs/gemini-wire.md#urls-and-api-versions).

use serde::Serialize;

use super::errors::ApiError;

/// Upstream's default and maximum `pageSize`.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Model {
    name: String,
    version: &'static str,
    display_name: String,
    description: String,
    input_token_limit: u32,
    output_token_limit: u32,
    supported_generation_methods: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<bool>,
}

const CHAT_METHODS: &[&str] = &[
    "generateContent",
    "countTokens",
    "createCachedContent",
    "batchGenerateContent",
];
const GEMMA_METHODS: &[&str] = &["generateContent", "countTokens"];
const EMBED_METHODS: &[&str] = &[
    "embedContent",
    "countTextTokens",
    "countTokens",
    "asyncBatchEmbedContent",
];

/// Listed ids, in listing order; the last two only on v1beta.
const LISTED: [&str; 7] = [
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.0-flash",
    "gemma-3-27b-it",
    "gemini-embedding-001",
    "gemini-flash-latest",
    "gemini-pro-latest",
];

fn is_alias(id: &str) -> bool {
    id.ends_with("-latest")
}

/// Whether `models/{id}` exists on this API version.
pub(crate) fn is_known(version: &str, id: &str) -> bool {
    let well_formed = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !well_formed || (is_alias(id) && version != "v1beta") {
        return false;
    }
    LISTED.contains(&id)
        || ["mock-", "gemini-", "gemma-", "text-embedding-"]
            .iter()
            .any(|p| id.starts_with(p))
}

fn display_name(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The resource for a known id (callers check `is_known` first).
pub(crate) fn model(id: &str) -> Model {
    let embedding = id.contains("embedding");
    let gemma = id.starts_with("gemma-");
    let thinking = id.starts_with("gemini-2.5") || id.starts_with("gemini-3") || is_alias(id);
    let (methods, input, output) = if embedding {
        (EMBED_METHODS, 2048, 1)
    } else if gemma {
        (GEMMA_METHODS, 131_072, 8192)
    } else {
        (
            CHAT_METHODS,
            1_048_576,
            if thinking { 65_536 } else { 8192 },
        )
    };
    let sampling = !embedding;
    Model {
        name: format!("models/{id}"),
        version: if id.starts_with("gemini-2.0") {
            "2.0"
        } else {
            "001"
        },
        display_name: display_name(id),
        description: format!("Mock of {id}, served offline by mock-gemini."),
        input_token_limit: input,
        output_token_limit: output,
        supported_generation_methods: methods,
        temperature: sampling.then_some(1.0),
        top_p: sampling.then_some(0.95),
        top_k: sampling.then_some(if thinking { 64 } else { 40 }),
        max_temperature: (sampling && !gemma).then_some(2.0),
        thinking: thinking.then_some(true),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelPage {
    models: Vec<Model>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// Ids listed on this version.
pub(crate) fn listed(version: &str) -> impl Iterator<Item = &'static str> + '_ {
    LISTED
        .iter()
        .copied()
        .filter(move |id| version == "v1beta" || !is_alias(id))
}

/// One page of `GET /{v}/models`. Page tokens are opaque to clients; here they carry the
/// offset of the next page.
pub(crate) fn page(
    version: &str,
    page_size: Option<&str>,
    page_token: Option<&str>,
) -> Result<ModelPage, ApiError> {
    let size = match page_size.map(str::parse::<i64>) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if n <= 0 => DEFAULT_PAGE,
        Some(Ok(n)) => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
        Some(Err(_)) => {
            return Err(ApiError::invalid(
                "Invalid value at 'page_size' (TYPE_INT32)",
            ))
        }
    };
    let start = match page_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("mockpage-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::invalid("Invalid page token."))?,
    };
    let all: Vec<&str> = listed(version).collect();
    let end = start.saturating_add(size).min(all.len());
    let models = all
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|id| model(id))
        .collect();
    let next_page_token = (end < all.len()).then(|| format!("mockpage-{end}"));
    Ok(ModelPage {
        models,
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_aliases_exist_only_on_v1beta() {
        assert!(is_known("v1beta", "gemini-flash-latest"));
        assert!(!is_known("v1", "gemini-flash-latest"));
        assert!(is_known("v1", "gemini-3-flash-preview"));
        assert!(is_known("v1", "mock-503"));
        assert!(!is_known("v1", "gpt-4o"));
        assert!(!is_known("v1", "gemini%2F.."));
        assert_eq!(listed("v1").count(), 5);
        assert_eq!(listed("v1beta").count(), 7);
    }

    #[test]
    fn pages_with_next_tokens() {
        let p = page("v1beta", Some("5"), None).unwrap();
        assert_eq!(p.models.len(), 5);
        let token = p.next_page_token.unwrap();
        let p2 = page("v1beta", Some("5"), Some(&token)).unwrap();
        assert_eq!(p2.models.len(), 2);
        assert!(p2.next_page_token.is_none());
    }
}
