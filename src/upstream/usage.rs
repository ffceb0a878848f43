//! The tokens of one answer, read from the usage object Gemini reported:
//! `usageMetadata` on the native surface, `usage` on the OpenAI-compatible one.

use serde::Deserialize;

/// Tokens Gemini reported for one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    /// The answer's tokens (`candidatesTokenCount`, `completion_tokens`).
    pub response: u64,
    pub thoughts: u64,
    pub total: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    total_token_count: Option<u64>,
}

/// OpenAI's `usage`, and an interaction's (which names its counts `total_…`).
#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(alias = "total_input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(alias = "total_output_tokens")]
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    completion_tokens_details: Option<OpenAiDetails>,
}

#[derive(Deserialize)]
struct OpenAiDetails {
    reasoning_tokens: Option<u64>,
}

impl Tokens {
    /// Reads a usage object: Gemini's `usageMetadata` when `gemini`, else
    /// OpenAI's `usage`. Missing or `null` counts are 0; a malformed object is none.
    pub fn from_usage(gemini: bool, object: &[u8]) -> Option<Tokens> {
        let (prompt, response, thoughts, total) = if gemini {
            let u: GeminiUsage = serde_json::from_slice(object).ok()?;
            let thoughts = u.thoughts_token_count.unwrap_or(0);
            let counts = (u.prompt_token_count, u.candidates_token_count);
            (
                counts.0.unwrap_or(0),
                counts.1.unwrap_or(0),
                thoughts,
                u.total_token_count,
            )
        } else {
            let u: OpenAiUsage = serde_json::from_slice(object).ok()?;
            let (prompt, response) = (
                u.prompt_tokens.unwrap_or(0),
                u.completion_tokens.unwrap_or(0),
            );
            let reasoning = u.completion_tokens_details.and_then(|d| d.reasoning_tokens);
            // Without details, what the total holds beyond prompt and answer is thinking.
            let rest = u
                .total_tokens
                .unwrap_or(0)
                .saturating_sub(prompt.saturating_add(response));
            (prompt, response, reasoning.unwrap_or(rest), u.total_tokens)
        };
        let total = match total {
            Some(total) if total > 0 => total,
            _ => prompt.saturating_add(response).saturating_add(thoughts),
        };
        Some(Tokens {
            prompt,
            response,
            thoughts,
            total,
        })
    }
}

impl From<super::gemini::UsageMetadata> for Tokens {
    fn from(usage: super::gemini::UsageMetadata) -> Tokens {
        Tokens {
            prompt: usage.prompt_token_count,
            response: usage.candidates_token_count,
            thoughts: usage.thoughts_token_count,
            total: usage.total_token_count,
        }
    }
}
