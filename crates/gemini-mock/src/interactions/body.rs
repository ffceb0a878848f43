//! The create body of an interaction, read leniently: only what the mock answers from
//! (model or agent, the input's text, the conversation it continues, and how it is to
//! be run) is parsed; tools, generation settings and the rest are accepted and ignored.

use serde::Deserialize;
use serde_json::Value;

/// `POST /{v}/interactions`. The SDKs write snake_case; camelCase is accepted too, as
/// Google's JSON parsers accept both.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CreateBody {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default, alias = "previousInteractionId")]
    pub previous_interaction_id: Option<String>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub background: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default, alias = "systemInstruction")]
    pub system_instruction: Option<Value>,
}

/// Every text in an input, in order and joined by spaces: a string, a content block
/// (`{"type": "text", "text": ..}`), a turn or step (`{"role", "content": ..}`), or a
/// list of any of these. Non-text blocks contribute nothing.
pub(crate) fn text_of(input: &Value) -> String {
    let mut out = Vec::new();
    collect(input, &mut out);
    out.join(" ")
}

fn collect<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(map) => {
            if let Some(Value::String(text)) = map.get("text") {
                out.push(text);
            } else if let Some(content) = map.get("content") {
                collect(content, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_read_from_strings_blocks_and_turns() {
        assert_eq!(text_of(&json!("hi there")), "hi there");
        assert_eq!(text_of(&json!({"type": "text", "text": "one"})), "one");
        let turns = json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image", "uri": "x"}]},
            {"role": "model", "content": "b"}
        ]);
        assert_eq!(text_of(&turns), "a b");
        assert_eq!(text_of(&json!(42)), "");
    }
}
