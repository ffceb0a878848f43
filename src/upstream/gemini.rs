//! Gemini's generateContent wire format: the request the service builds and the
//! parts of the answer it reads (docs/gemini-wire.md#generatecontent).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct SystemInstruction<'a> {
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    contents: [Content<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<&'a RawValue>,
}

/// The generateContent body for one user prompt; `generation_config` is passed
/// through as the client wrote it.
pub fn generate_body(
    prompt: &str,
    system_instruction: Option<&str>,
    generation_config: Option<&RawValue>,
) -> Vec<u8> {
    let request = GenerateRequest {
        contents: [Content {
            role: "user",
            parts: [Part { text: prompt }],
        }],
        system_instruction: system_instruction.map(|text| SystemInstruction {
            parts: [Part { text }],
        }),
        generation_config,
    };
    // Strings and already-valid raw JSON always serialise.
    serde_json::to_vec(&request).unwrap_or_default()
}

/// The fields of a GenerateContentResponse the service uses; the rest is ignored.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResponse {
    #[serde(default)]
    pub candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(default)]
    pub content: Option<CandidateContent>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
pub struct CandidateContent {
    #[serde(default)]
    pub parts: Vec<ResponsePart>,
}

#[derive(Deserialize, Debug, Default)]
pub struct ResponsePart {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub thought: bool,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub total_token_count: u64,
    #[serde(default)]
    pub thoughts_token_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_documented_body() {
        let config = RawValue::from_string(r#"{"temperature":0.2}"#.into()).unwrap();
        let body = generate_body("hi", Some("be brief"), Some(&config));
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "systemInstruction": {"parts": [{"text": "be brief"}]},
                "generationConfig": {"temperature": 0.2}
            })
        );
        let bare: serde_json::Value =
            serde_json::from_slice(&generate_body("x", None, None)).unwrap();
        assert_eq!(
            bare,
            serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]})
        );
    }
}
