//! The Live API's messages: what a client sends (parsed leniently, in either casing, as
//! Google's protobuf JSON parser does: python sends `client_content`, JS
//! `clientContent`) and what the mock answers (built from structs, so the key order is
//! the captured one, and pretty-printed with a trailing newline as captured frames are;
//! docs/gemini-wire.md#the-live-api).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::request::{count_words, Content};

/// One client message: exactly one of the four top-level fields.
#[derive(Debug)]
pub(crate) enum ClientMessage {
    Setup(Setup),
    ClientContent(ClientContent),
    RealtimeInput(RealtimeInput),
    ToolResponse(ToolResponse),
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Setup {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Tool {
    #[serde(
        default,
        rename = "functionDeclarations",
        alias = "function_declarations"
    )]
    pub function_declarations: Option<Vec<FunctionDeclaration>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FunctionDeclaration {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ClientContent {
    #[serde(default)]
    pub turns: Option<Vec<Content>>,
    #[serde(default, rename = "turnComplete", alias = "turn_complete")]
    pub turn_complete: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RealtimeInput {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub audio: Option<Blob>,
    /// The deprecated form of `audio` (and video), which older clients still send.
    #[serde(default, rename = "mediaChunks", alias = "media_chunks")]
    pub media_chunks: Option<Vec<Blob>>,
    #[serde(default, rename = "audioStreamEnd", alias = "audio_stream_end")]
    pub audio_stream_end: Option<bool>,
    #[serde(default, rename = "activityEnd", alias = "activity_end")]
    pub activity_end: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Blob {
    /// Base64, as protobuf JSON writes bytes.
    #[serde(default)]
    pub data: Option<String>,
}

impl Blob {
    /// The decoded size, worked out from the base64 length: the mock never needs the bytes.
    pub fn decoded_len(&self) -> usize {
        let data = self.data.as_deref().unwrap_or_default().trim_end();
        let padding = data.bytes().rev().take_while(|b| *b == b'=').count();
        (data.len() / 4 * 3 + (data.len() % 4).saturating_sub(1)).saturating_sub(padding)
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ToolResponse {
    #[serde(default, rename = "functionResponses", alias = "function_responses")]
    pub function_responses: Option<Vec<FunctionResponse>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FunctionResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub response: Option<Value>,
}

impl Setup {
    /// The first function the setup declares: the only kind of tool the mock calls.
    pub fn first_function(&self) -> Option<&str> {
        self.tools
            .iter()
            .flatten()
            .flat_map(|t| t.function_declarations.iter().flatten())
            .find_map(|f| f.name.as_deref())
    }
}

impl ClientContent {
    /// The last user turn's text, and the words of every turn (history counts as prompt).
    pub fn prompt(&self) -> (Option<String>, u32) {
        let turns = self.turns.as_deref().unwrap_or_default();
        let texts = |c: &Content| -> Vec<String> {
            c.parts
                .iter()
                .flatten()
                .filter(|p| p.thought != Some(true))
                .filter_map(|p| p.text.clone())
                .collect()
        };
        let last_user = turns
            .iter()
            .rev()
            .find(|c| matches!(c.role.as_deref(), None | Some("") | Some("user")))
            .map(|c| texts(c).concat());
        let words = turns
            .iter()
            .flat_map(texts)
            .map(|t| count_words(&t))
            .fold(0u32, u32::saturating_add);
        (last_user, words)
    }
}

/// Why a client message was refused: the text of the 1007 close.
pub(crate) fn parse(data: &[u8]) -> Result<ClientMessage, String> {
    let invalid = |e: serde_json::Error| format!("Invalid JSON payload received. {e}");
    let object: Map<String, Value> = serde_json::from_slice(data).map_err(invalid)?;
    let mut fields = object.into_iter();
    let (name, value) = fields
        .next()
        .ok_or_else(|| "Invalid JSON payload received. Empty message.".to_owned())?;
    if let Some((other, _)) = fields.next() {
        return Err(format!(
            "Invalid JSON payload received. Oneof field 'message_type' is already set. \
             Cannot set '{other}'"
        ));
    }
    let message = match name.as_str() {
        "setup" => ClientMessage::Setup(serde_json::from_value(value).map_err(invalid)?),
        "clientContent" | "client_content" => {
            ClientMessage::ClientContent(serde_json::from_value(value).map_err(invalid)?)
        }
        "realtimeInput" | "realtime_input" => {
            ClientMessage::RealtimeInput(serde_json::from_value(value).map_err(invalid)?)
        }
        "toolResponse" | "tool_response" => {
            ClientMessage::ToolResponse(serde_json::from_value(value).map_err(invalid)?)
        }
        other => {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{other}\": Cannot find field."
            ))
        }
    };
    Ok(message)
}

/// One server message. Exactly one of the fields beside `usage_metadata` is set.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    setup_complete: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_content: Option<ServerContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call: Option<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    go_away: Option<GoAway>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<Usage>,
}

#[derive(Debug, Default, Serialize)]
struct Empty {}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    model_turn: Option<ModelTurn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turn_complete: Option<bool>,
}

#[derive(Debug, Serialize)]
struct ModelTurn {
    parts: Vec<TextPart>,
}

#[derive(Debug, Serialize)]
struct TextPart {
    text: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolCall {
    function_calls: Vec<FunctionCall>,
}

#[derive(Debug, Serialize)]
struct FunctionCall {
    id: String,
    name: String,
    args: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GoAway {
    time_left: &'static str,
}

/// Live usage counts the answer as `responseTokenCount`, not `candidatesTokenCount`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    prompt_token_count: u32,
    response_token_count: u32,
    total_token_count: u32,
    prompt_tokens_details: [Modality; 1],
    response_tokens_details: [Modality; 1],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Modality {
    modality: &'static str,
    token_count: u32,
}

impl ServerMessage {
    pub fn setup_complete() -> Self {
        ServerMessage {
            setup_complete: Some(Empty {}),
            ..Self::default()
        }
    }

    pub fn go_away(time_left: &'static str) -> Self {
        ServerMessage {
            go_away: Some(GoAway { time_left }),
            ..Self::default()
        }
    }

    pub fn model_turn(text: String) -> Self {
        Self::content(ServerContent {
            model_turn: Some(ModelTurn {
                parts: vec![TextPart { text }],
            }),
            ..ServerContent::default()
        })
    }

    pub fn generation_complete() -> Self {
        Self::content(ServerContent {
            generation_complete: Some(true),
            ..ServerContent::default()
        })
    }

    /// The end of a turn, with the turn's usage beside it. `prompt_modality` is `TEXT`
    /// or `AUDIO`.
    pub fn turn_complete(prompt: u32, response: u32, prompt_modality: &'static str) -> Self {
        let mut m = Self::content(ServerContent {
            turn_complete: Some(true),
            ..ServerContent::default()
        });
        m.usage_metadata = Some(Usage {
            prompt_token_count: prompt,
            response_token_count: response,
            total_token_count: prompt.saturating_add(response),
            prompt_tokens_details: [Modality {
                modality: prompt_modality,
                token_count: prompt,
            }],
            response_tokens_details: [Modality {
                modality: "TEXT",
                token_count: response,
            }],
        });
        m
    }

    pub fn tool_call(id: String, name: String, args: Value) -> Self {
        ServerMessage {
            tool_call: Some(ToolCall {
                function_calls: vec![FunctionCall { id, name, args }],
            }),
            ..Self::default()
        }
    }

    fn content(content: ServerContent) -> Self {
        ServerMessage {
            server_content: Some(content),
            ..Self::default()
        }
    }

    /// The frame payload: pretty JSON and a newline, as the service's captured frames.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::reply::pretty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &ServerMessage) -> String {
        String::from_utf8(m.to_bytes()).unwrap()
    }

    #[test]
    fn either_casing_of_the_top_level_fields_is_read() {
        let snake = br#"{"client_content": {"turns": [{"role": "user", "parts": [{"text": "a b"}]}], "turn_complete": true}}"#;
        let camel = br#"{"clientContent": {"turns": [{"parts": [{"text": "a b"}]}], "turnComplete": true}}"#;
        for raw in [&snake[..], &camel[..]] {
            let ClientMessage::ClientContent(c) = parse(raw).unwrap() else {
                panic!("not client content")
            };
            assert_eq!(c.turn_complete, Some(true));
            assert_eq!(c.prompt(), (Some("a b".to_owned()), 2));
        }
        assert!(matches!(
            parse(br#"{"realtime_input": {"audio_stream_end": true}}"#),
            Ok(ClientMessage::RealtimeInput(RealtimeInput {
                audio_stream_end: Some(true),
                ..
            }))
        ));
        assert!(matches!(
            parse(br#"{"tool_response": {"function_responses": [{"id": "x"}]}}"#),
            Ok(ClientMessage::ToolResponse(_))
        ));
    }

    #[test]
    fn refuses_what_the_service_refuses() {
        assert_eq!(
            parse(br#"{"bogus": {}}"#).unwrap_err(),
            "Invalid JSON payload received. Unknown name \"bogus\": Cannot find field."
        );
        assert!(parse(b"not json").unwrap_err().starts_with("Invalid JSON"));
        assert!(parse(b"{}").is_err());
        assert!(parse(br#"{"setup": {}, "clientContent": {}}"#)
            .unwrap_err()
            .contains("Oneof"));
        assert!(parse(br#"{"setup": {"model": 3}}"#).is_err());
    }

    #[test]
    fn reads_the_first_declared_function() {
        let ClientMessage::Setup(s) = parse(
            br#"{"setup": {"model": "models/x", "tools": [{"googleSearch": {}}, {"function_declarations": [{"name": "get_weather"}]}]}}"#,
        )
        .unwrap() else {
            panic!("not a setup")
        };
        assert_eq!(s.first_function(), Some("get_weather"));
        assert_eq!(Setup::default().first_function(), None);
    }

    #[test]
    fn base64_sizes_are_worked_out_without_decoding() {
        let size = |d: &str| {
            Blob {
                data: Some(d.to_owned()),
            }
            .decoded_len()
        };
        assert_eq!(size(""), 0);
        assert_eq!(size("AA=="), 1);
        assert_eq!(size("AAA="), 2);
        assert_eq!(size("AAAA"), 3);
        assert_eq!(size("AAAAAA"), 4);
    }

    #[test]
    fn messages_have_the_captured_shape() {
        assert_eq!(
            text(&ServerMessage::setup_complete()),
            "{\n  \"setupComplete\": {}\n}\n"
        );
        assert_eq!(
            text(&ServerMessage::generation_complete()),
            "{\n  \"serverContent\": {\n    \"generationComplete\": true\n  }\n}\n"
        );
        let end: Value =
            serde_json::from_slice(&ServerMessage::turn_complete(3, 4, "TEXT").to_bytes()).unwrap();
        assert_eq!(
            end,
            serde_json::json!({
                "serverContent": {"turnComplete": true},
                "usageMetadata": {
                    "promptTokenCount": 3, "responseTokenCount": 4, "totalTokenCount": 7,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}],
                    "responseTokensDetails": [{"modality": "TEXT", "tokenCount": 4}]
                }
            })
        );
        let keys = text(&ServerMessage::turn_complete(1, 1, "TEXT"));
        assert!(keys.find("serverContent") < keys.find("usageMetadata"));
        assert!(keys.find("totalTokenCount") < keys.find("promptTokensDetails"));
    }
}
