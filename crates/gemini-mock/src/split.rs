//! The `split_usage` knob: body chunks whose boundary falls inside the usage object.
//!
//! A proxy that counts tokens from the bytes it relays must not assume that a read holds
//! a whole event, let alone a whole `usageMetadata` (native) or `usage` (OpenAI) object:
//! upstream's chunk boundaries fall anywhere. With the knob on, every frame that carries a
//! usage object goes out as two body chunks cut just after its first key, with a pause
//! between them so they reach the client as separate reads. The bytes themselves do not
//! change; only where the chunks end does.

use std::time::Duration;

use bytes::Bytes;

use super::stream::Step;

/// Between the two halves of a cut frame: long enough for the server to flush the first
/// half and the client to read it on its own, short enough not to slow a suite.
pub(crate) const SPLIT_USAGE_PAUSE: Duration = Duration::from_millis(20);

/// The keys of a usage object: Gemini's, then the OpenAI-compatible surface's.
const USAGE_KEYS: [&[u8]; 2] = [b"\"usageMetadata\"", b"\"usage\""];

/// Where to cut `frame` so that the usage object is split: just after the first key's
/// `:` and the spaces that follow it (`"promptTokenCount": ` | `4,...`). `None` when the
/// frame carries no usage object.
///
/// The last match wins, since usage follows the answer's text in every body. A match
/// counts only when `: {` follows, which only a key can have: inside a string value a
/// quote is always escaped, so quoted text cannot pass for the key.
pub(crate) fn usage_cut(frame: &[u8]) -> Option<usize> {
    USAGE_KEYS.iter().find_map(|key| {
        let mut end = frame.len();
        while let Some(at) = rfind(&frame[..end], key) {
            if let Some(open) = object_after(frame, at + key.len()) {
                let colon = open + frame[open..].iter().position(|&b| b == b':')?;
                return Some(skip_spaces(frame, colon + 1));
            }
            end = at;
        }
        None
    })
}

/// The index just after the `{` of `: {` starting at `from` (whitespace allowed around
/// the colon), or `None` when something else follows.
fn object_after(frame: &[u8], from: usize) -> Option<usize> {
    let colon = skip_spaces(frame, from);
    if frame.get(colon) != Some(&b':') {
        return None;
    }
    let open = skip_spaces(frame, colon + 1);
    (frame.get(open) == Some(&b'{')).then_some(open + 1)
}

fn skip_spaces(frame: &[u8], mut i: usize) -> usize {
    while frame.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The two halves of `frame` cut inside its usage object, or `None` when it has none.
pub(crate) fn cut(frame: &Bytes) -> Option<(Bytes, Bytes)> {
    usage_cut(frame).map(|at| (frame.slice(..at), frame.slice(at..)))
}

/// `steps` with every data frame that carries a usage object cut in two, a pause between
/// the halves.
pub(crate) fn cut_steps(steps: impl Iterator<Item = Step>) -> impl Iterator<Item = Step> {
    steps.flat_map(|step| {
        let (first, rest) = match step {
            Step::Data(frame) => match cut(&frame) {
                Some((head, tail)) => (
                    Step::Data(head),
                    Some([Step::Wait(SPLIT_USAGE_PAUSE), Step::Data(tail)]),
                ),
                None => (Step::Data(frame), None),
            },
            other => (other, None),
        };
        std::iter::once(first).chain(rest.into_iter().flatten())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halves(frame: &str) -> Option<(String, String)> {
        let at = usage_cut(frame.as_bytes())?;
        Some((frame[..at].to_owned(), frame[at..].to_owned()))
    }

    #[test]
    fn an_sse_event_is_cut_after_the_prompt_token_count_key() {
        let event = "data: {\"candidates\": [],\"usageMetadata\": {\"promptTokenCount\": 4,\
                     \"totalTokenCount\": 4},\"responseId\": \"x\"}\r\n\r\n";
        let (head, tail) = halves(event).unwrap();
        assert!(head.ends_with("{\"promptTokenCount\": "), "{head}");
        assert!(tail.starts_with("4,\"totalTokenCount\""), "{tail}");
    }

    #[test]
    fn a_pretty_body_is_cut_after_the_key_and_its_space() {
        let body = "{\n  \"usageMetadata\": {\n    \"promptTokenCount\": 4,\n    \
                    \"totalTokenCount\": 9\n  }\n}\n";
        let (head, tail) = halves(body).unwrap();
        assert!(head.ends_with("\n    \"promptTokenCount\": "), "{head}");
        assert!(tail.starts_with("4,\n"), "{tail}");
    }

    #[test]
    fn an_openai_body_is_cut_inside_usage() {
        let body = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        let (head, tail) = halves(body).unwrap();
        assert!(head.ends_with(r#""usage":{"prompt_tokens":"#), "{head}");
        assert!(tail.starts_with("4,"), "{tail}");
    }

    #[test]
    fn quoted_usage_keys_in_the_text_are_not_mistaken_for_the_object() {
        let text = r#"{"text": "\"usageMetadata\": {\"a\": 1} and \"usage", "n": 1}"#;
        assert_eq!(usage_cut(text.as_bytes()), None);
        let both = r#"{"text": "\"usage\": {\"a\": 1}","usage": {"prompt_tokens": 2}}"#;
        let (head, _) = halves(both).unwrap();
        assert!(head.ends_with(r#","usage": {"prompt_tokens": "#), "{head}");
    }

    #[test]
    fn frames_without_usage_pass_whole_and_cut_frames_join_up() {
        let plain = Bytes::from_static(b"data: [DONE]\n\n");
        let usage = Bytes::from_static(b"{\"usage\":{\"prompt_tokens\":1}}");
        let steps = vec![Step::Data(plain.clone()), Step::Data(usage.clone())];
        let out: Vec<Step> = cut_steps(steps.into_iter()).collect();
        assert_eq!(out.len(), 4);
        assert!(matches!(&out[0], Step::Data(b) if *b == plain));
        assert!(matches!(&out[2], Step::Wait(d) if *d == SPLIT_USAGE_PAUSE));
        let joined: Vec<u8> = out
            .iter()
            .skip(1)
            .filter_map(|s| match s {
                Step::Data(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(joined, usage.to_vec());
    }
}
