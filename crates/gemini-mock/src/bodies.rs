//! Success bodies of the native routes: GenerateContentResponse (whole or as stream chunks),
//! countTokens and embeddings.
//!
//! Field order and omissions follow real captures (docs/gemini-wire.md#generatecontent, #sse-streams): proto3 JSON
//! leaves out zero counts, `finishReason` only on a stream's last chunk, usage cumulative.

use serde::Serialize;

use super::scenario::Scenario;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<Vec<Candidate<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Usage,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_ratings: Option<Vec<Rating>>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parts: Vec<Part<'a>>,
    role: &'static str,
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    safety_ratings: Vec<Rating>,
}

#[derive(Serialize)]
struct Rating {
    category: &'static str,
    probability: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    prompt_token_count: u32,
    #[serde(skip_serializing_if = "is_zero")]
    candidates_token_count: u32,
    total_token_count: u32,
    #[serde(skip_serializing_if = "is_zero")]
    cached_content_token_count: u32,
    prompt_tokens_details: [TokenDetail; 1],
    /// With a cached content only.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_tokens_details: Option<[TokenDetail; 1]>,
    #[serde(skip_serializing_if = "is_zero")]
    thoughts_token_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenDetail {
    modality: &'static str,
    token_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Thought tokens reported by the `thoughts` and `max-tokens-empty` scenarios.
const THOUGHT_TOKENS: u32 = 12;
const THOUGHT_TEXT: &str = "thinking...";

/// The answer shape a content scenario asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Normal,
    Blocked,
    SafetyFinish,
    MaxTokensEmpty,
    Thoughts,
    EmptyCandidates,
}

impl Shape {
    pub fn of(scenario: Option<&Scenario>) -> Shape {
        match scenario {
            Some(Scenario::Blocked) => Shape::Blocked,
            Some(Scenario::SafetyFinish) => Shape::SafetyFinish,
            Some(Scenario::MaxTokensEmpty) => Shape::MaxTokensEmpty,
            Some(Scenario::Thoughts) => Shape::Thoughts,
            Some(Scenario::EmptyCandidates) => Shape::EmptyCandidates,
            _ => Shape::Normal,
        }
    }

    /// Shapes whose stream is a single event rather than a split answer.
    pub fn single_event(self) -> bool {
        !matches!(self, Shape::Normal | Shape::Thoughts)
    }
}

/// Everything one generateContent answer is built from. Owned, so that a stream can
/// build its events one at a time while it is sent.
pub(crate) struct Answer {
    pub model: String,
    pub response_id: String,
    /// Including `cached_tokens`, as Gemini counts them.
    pub prompt_tokens: u32,
    /// Tokens of the cached content the request used (`cachedContentTokenCount`).
    pub cached_tokens: u32,
    pub shape: Shape,
}

impl Answer {
    fn usage(&self, candidates: u32, thoughts: u32) -> Usage {
        Usage {
            prompt_token_count: self.prompt_tokens,
            candidates_token_count: candidates,
            total_token_count: self.prompt_tokens + candidates + thoughts,
            prompt_tokens_details: [TokenDetail {
                modality: "TEXT",
                token_count: self.prompt_tokens,
            }],
            cache_tokens_details: (self.cached_tokens > 0).then_some([TokenDetail {
                modality: "TEXT",
                token_count: self.cached_tokens,
            }]),
            thoughts_token_count: thoughts,
            cached_content_token_count: self.cached_tokens,
        }
    }

    /// One response carrying `piece` of the answer. `words_so_far` counts the answer up
    /// to and including this piece (usage is cumulative); `last` adds the finish reason;
    /// `first` carries the thought part of the `thoughts` shape.
    pub fn response<'a>(
        &'a self,
        piece: &'a str,
        words_so_far: u32,
        first: bool,
        last: bool,
    ) -> GenerateResponse<'a> {
        let mut out = GenerateResponse {
            candidates: None,
            prompt_feedback: None,
            usage_metadata: self.usage(0, 0),
            model_version: &self.model,
            response_id: &self.response_id,
        };
        match self.shape {
            Shape::Blocked => {
                out.prompt_feedback = Some(PromptFeedback {
                    block_reason: "PROHIBITED_CONTENT",
                    safety_ratings: Vec::new(),
                });
            }
            Shape::EmptyCandidates => out.candidates = Some(Vec::new()),
            Shape::SafetyFinish => {
                out.candidates = Some(vec![Candidate {
                    content: None,
                    finish_reason: Some("SAFETY"),
                    index: 0,
                    safety_ratings: Some(vec![Rating {
                        category: "HARM_CATEGORY_HARASSMENT",
                        probability: "HIGH",
                    }]),
                }]);
            }
            Shape::MaxTokensEmpty => {
                out.candidates = Some(vec![Candidate {
                    content: Some(Content {
                        parts: Vec::new(),
                        role: "model",
                    }),
                    finish_reason: Some("MAX_TOKENS"),
                    index: 0,
                    safety_ratings: None,
                }]);
                out.usage_metadata = self.usage(0, THOUGHT_TOKENS);
            }
            Shape::Normal | Shape::Thoughts => {
                let thoughts = if self.shape == Shape::Thoughts {
                    THOUGHT_TOKENS
                } else {
                    0
                };
                let mut parts = Vec::with_capacity(2);
                if first && thoughts > 0 {
                    parts.push(Part {
                        text: THOUGHT_TEXT,
                        thought: Some(true),
                    });
                }
                parts.push(Part {
                    text: piece,
                    thought: None,
                });
                out.candidates = Some(vec![Candidate {
                    content: Some(Content {
                        parts,
                        role: "model",
                    }),
                    finish_reason: last.then_some("STOP"),
                    index: 0,
                    safety_ratings: None,
                }]);
                out.usage_metadata = self.usage(words_so_far, thoughts);
            }
        }
        out
    }
}

/// A random-looking `responseId`, as opaque as upstream's.
pub(crate) fn response_id() -> String {
    const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let len = fastrand::usize(20..=30);
    (0..len)
        .map(|_| char::from(URL_SAFE[fastrand::usize(..URL_SAFE.len())]))
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CountTokens {
    total_tokens: u32,
    prompt_tokens_details: [TokenDetail; 1],
}

pub(crate) fn count_tokens(tokens: u32) -> CountTokens {
    CountTokens {
        total_tokens: tokens,
        prompt_tokens_details: [TokenDetail {
            modality: "TEXT",
            token_count: tokens,
        }],
    }
}

#[derive(Serialize)]
pub(crate) struct Embedding {
    values: Vec<f32>,
}

#[derive(Serialize)]
pub(crate) struct EmbedResponse {
    embedding: Embedding,
}

#[derive(Serialize)]
pub(crate) struct BatchEmbedResponse {
    embeddings: Vec<Embedding>,
}

pub(crate) fn embed_one(values: Vec<f32>) -> EmbedResponse {
    EmbedResponse {
        embedding: Embedding { values },
    }
}

pub(crate) fn embed_batch(all: Vec<Vec<f32>>) -> BatchEmbedResponse {
    BatchEmbedResponse {
        embeddings: all.into_iter().map(|values| Embedding { values }).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_ids_are_url_safe() {
        let id = response_id();
        assert!((20..=30).contains(&id.len()));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
