//! The OpenAI-compatible surface (`/v1beta/openai/...`): request parsing and the minimal
//! OpenAI shapes upstream returns (docs/gemini-wire.md#the-openai-compatible-surface). Its errors are Google error
//! bodies wrapped in a one-element array; that wrapping is decided by the handler.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::catalogue;
use super::errors::ApiError;
use super::request::{count_words, embed};

#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    #[serde(default)]
    pub stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<Value>,
}

/// The text of a message: a string, or the `text` items of a content array.
fn message_text(m: &Message) -> String {
    match &m.content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The model id without an optional `models/` prefix.
pub(crate) fn bare_model(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

pub(crate) struct ChatPrompt {
    pub model: String,
    pub last_user_text: String,
    pub first_user_text: Option<String>,
    pub tokens: u32,
    pub stream: bool,
}

impl ChatRequest {
    pub fn prompt(self) -> Result<ChatPrompt, ApiError> {
        let model = match self.model.as_deref() {
            Some(m) if !m.is_empty() => bare_model(m).to_owned(),
            _ => return Err(ApiError::invalid("model is not specified")),
        };
        let messages = match self.messages {
            Some(m) if !m.is_empty() => m,
            _ => return Err(ApiError::invalid("messages is not specified")),
        };
        let is_user = |m: &&Message| m.role.as_deref() == Some("user");
        let words: u32 = messages.iter().map(|m| count_words(&message_text(m))).sum();
        Ok(ChatPrompt {
            model,
            last_user_text: messages
                .iter()
                .rev()
                .find(is_user)
                .map(message_text)
                .unwrap_or_default(),
            first_user_text: messages.iter().find(is_user).map(message_text),
            tokens: words.max(1),
            stream: self.stream.unwrap_or(false),
        })
    }
}

#[derive(Serialize)]
pub(crate) struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ChatUsage>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<ChatMessage<'a>>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

fn usage(prompt: u32, completion: u32) -> ChatUsage {
    ChatUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A non-streamed `chat.completion`.
pub(crate) fn completion<'a>(
    id: &'a str,
    model: &'a str,
    answer: &'a str,
    prompt: u32,
) -> Completion<'a> {
    Completion {
        id,
        object: "chat.completion",
        created: now_secs(),
        model,
        choices: [Choice {
            index: 0,
            message: Some(ChatMessage {
                role: "assistant",
                content: answer,
            }),
            delta: None,
            finish_reason: Some("stop"),
        }],
        usage: Some(usage(prompt, count_words(answer))),
    }
}

/// One `chat.completion.chunk`; the last carries `finish_reason` and the usage, with
/// `completion` the words of the whole answer.
pub(crate) fn chunk<'a>(
    id: &'a str,
    model: &'a str,
    piece: &'a str,
    completion: u32,
    prompt: u32,
    last: bool,
) -> Completion<'a> {
    Completion {
        id,
        object: "chat.completion.chunk",
        created: now_secs(),
        model,
        choices: [Choice {
            index: 0,
            message: None,
            delta: Some(ChatMessage {
                role: "assistant",
                content: piece,
            }),
            finish_reason: last.then_some("stop"),
        }],
        usage: last.then(|| usage(prompt, completion)),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub input: Option<Value>,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingList {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

impl EmbeddingsRequest {
    pub fn model(&self) -> Result<String, ApiError> {
        match self.model.as_deref() {
            Some(m) if !m.is_empty() => Ok(bare_model(m).to_owned()),
            _ => Err(ApiError::invalid("model is not specified")),
        }
    }

    pub fn answer(&self, model: String) -> Result<EmbeddingList, ApiError> {
        let inputs: Vec<String> = match &self.input {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    ApiError::invalid("input must be a string or an array of strings")
                })?,
            _ => return Err(ApiError::invalid("input is not specified")),
        };
        let tokens: u32 = inputs.iter().map(|s| count_words(s)).sum();
        Ok(EmbeddingList {
            object: "list",
            data: inputs
                .iter()
                .enumerate()
                .map(|(index, s)| EmbeddingItem {
                    object: "embedding",
                    index,
                    embedding: embed(s),
                })
                .collect(),
            model,
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        })
    }
}

#[derive(Serialize)]
pub(crate) struct OpenAiModel {
    id: String,
    object: &'static str,
    owned_by: &'static str,
}

#[derive(Serialize)]
pub(crate) struct OpenAiModelList {
    object: &'static str,
    data: Vec<OpenAiModel>,
}

pub(crate) fn model(id: &str) -> OpenAiModel {
    OpenAiModel {
        id: format!("models/{id}"),
        object: "model",
        owned_by: "google",
    }
}

pub(crate) fn models(version: &str) -> OpenAiModelList {
    OpenAiModelList {
        object: "list",
        data: catalogue::listed(version).map(model).collect(),
    }
}
