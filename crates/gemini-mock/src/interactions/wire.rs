//! What an interaction looks like on the wire: the Interaction object, its usage, and
//! the events of its stream (docs/gemini-wire.md#interactions). Structs rather than
//! `json!`, to keep one field order.

use serde::Serialize;

/// The Interaction resource, whole (create, get, cancel) or as the lifecycle payload
/// of `interaction.created` / `interaction.completed`, which leave out the steps.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct InteractionJson<'a> {
    pub id: &'a str,
    pub object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<&'a str>,
    pub status: &'static str,
    pub created: String,
    pub updated: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_interaction_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct StepJson<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<TextBlock<'a>>>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct TextBlock<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: &'a str,
}

impl<'a> TextBlock<'a> {
    pub fn text(text: &'a str) -> Self {
        TextBlock { kind: "text", text }
    }
}

/// Token counts of one interaction. `total_input_tokens` includes the conversation it
/// continues, which the model reads again.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Usage {
    pub total_input_tokens: u32,
    pub total_output_tokens: u32,
    pub total_thought_tokens: u32,
    pub total_cached_tokens: u32,
    pub total_tool_use_tokens: u32,
    pub total_tokens: u32,
}

impl Usage {
    pub fn new(input: u32, output: u32) -> Usage {
        Usage {
            total_input_tokens: input,
            total_output_tokens: output,
            total_thought_tokens: 0,
            total_cached_tokens: 0,
            total_tool_use_tokens: 0,
            total_tokens: input + output,
        }
    }
}

/// One streamed event: its type and id first, then its payload.
#[derive(Debug, Serialize)]
pub(crate) struct Event<'a> {
    pub event_type: &'static str,
    pub event_id: String,
    #[serde(flatten)]
    pub payload: Payload<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Payload<'a> {
    /// `interaction.created`, `interaction.completed`.
    Interaction { interaction: InteractionJson<'a> },
    /// `interaction.status_update`.
    Status {
        interaction_id: &'a str,
        status: &'static str,
    },
    /// `step.start`.
    StepStart { index: u32, step: StepJson<'a> },
    /// `step.delta`.
    StepDelta { index: u32, delta: TextBlock<'a> },
    /// `step.stop`.
    StepStop { index: u32 },
}
