//! Reading an upstream body beside the relay.
//!
//! The proxy passes Gemini's bytes on exactly as they arrive. This reads the same
//! bytes on the side, never changing or holding back one, for two things the relay
//! cannot know by itself:
//!
//! * Whether the stream really finished. awc reports a connection that closes
//!   mid-body as a clean end of body (the fix ntex made in its PR #545 is not in
//!   awc 3.11), and passing that on would tell the client a cut answer was whole.
//!   So each framing's own end is checked: a declared length reached, a final
//!   Gemini event (a `finishReason`, an error, or a blocked prompt's
//!   `blockReason`), the closing `]` of a JSON array, or OpenAI's `data: [DONE]`.
//! * The tokens Gemini reported: the last `usageMetadata` (it is cumulative) or
//!   OpenAI's `usage`.
//!
//! This runs on every streamed byte, so no event is parsed: one pass follows the
//! SSE lines and the JSON structure (depth, strings, escapes, keys) and copies out
//! only the usage object, which is parsed when the tokens are asked for. Nothing
//! else is kept, so memory stays bounded whatever upstream sends.

use serde::Deserialize;
use std::cmp::Ordering;
use std::mem;

/// How an upstream body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One JSON answer, with no end marker of its own.
    Unary,
    /// Gemini's `?alt=sse` events.
    GeminiSse,
    /// Gemini's streamed JSON array (no `alt=sse`).
    GeminiJsonArray,
    /// OpenAI-compatible SSE, ending in `data: [DONE]`.
    OpenAiSse,
}

/// Tokens Gemini reported for one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    /// The answer's tokens (`candidatesTokenCount`, `completion_tokens`).
    pub response: u64,
    pub thoughts: u64,
    pub total: u64,
}

/// The upstream stream ended abnormally (cut, or without its end marker).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the upstream stream broke: {0}")]
pub struct StreamBroken(pub &'static str);

/// Gemini's usage objects are a few hundred bytes; a bigger one is dropped
/// rather than buffered, so no upstream can make this hold more.
const MAX_CAPTURE: usize = 1 << 20;
const DATA: &[u8] = b"data";
const NOT_DATA: u8 = u8::MAX;
const DONE: &[u8] = b"[DONE]";
const NOT_DONE: u8 = u8::MAX;

/// Reads one upstream body, chunk by chunk, beside the relay.
pub struct StreamReader {
    framing: Framing,
    declared_length: Option<u64>,
    received: u64,
    json: JsonScan,
    line: Line,
    /// A CR ended the last line, so an LF right after it ends no second one.
    after_cr: bool,
    /// The SSE event being read had a data line, so a blank line dispatches it.
    event_has_data: bool,
    /// How much of that event's data is `[DONE]` so far, or `NOT_DONE`.
    done: u8,
    /// The last dispatched event was one a stream ends with.
    ended: bool,
}

impl StreamReader {
    /// `declared_length`: the response's Content-Length, if it had one.
    pub fn new(framing: Framing, declared_length: Option<u64>) -> StreamReader {
        StreamReader {
            framing,
            declared_length,
            received: 0,
            json: JsonScan {
                // Inside the array, each response object is one level deeper.
                key_depth: 1 + u32::from(framing == Framing::GeminiJsonArray),
                at: Cursor::default(),
                capture: Vec::new(),
                usage: None,
            },
            line: Line::Name(0),
            after_cr: false,
            event_has_data: false,
            done: 0,
            ended: false,
        }
    }

    /// Feeds the next chunk exactly as it arrived (boundaries fall anywhere, even inside a CRLF or a UTF-8 sequence).
    pub fn observe(&mut self, chunk: &[u8]) {
        self.received += chunk.len() as u64;
        match self.framing {
            Framing::GeminiSse | Framing::OpenAiSse => self.observe_sse(chunk),
            Framing::Unary | Framing::GeminiJsonArray => self.json.feed(chunk),
        }
    }

    /// At the upstream's end of body: was that the real end?
    pub fn finish(&self) -> Result<(), StreamBroken> {
        if let Some(length) = self.declared_length {
            // A length is the framing's own end, and nothing is more exact.
            return match self.received.cmp(&length) {
                Ordering::Equal => Ok(()),
                Ordering::Less => Err(StreamBroken(
                    "Gemini's answer ended before its declared length",
                )),
                Ordering::Greater => {
                    Err(StreamBroken("Gemini's answer ran past its declared length"))
                }
            };
        }
        let ended = match self.framing {
            Framing::Unary => true,
            Framing::GeminiJsonArray => {
                self.json.at.closed_with == Some(b']') && !self.json.at.trailing
            }
            // Gemini may end a stream without sending a single event.
            Framing::GeminiSse if self.received == 0 => true,
            Framing::GeminiSse | Framing::OpenAiSse => {
                if self.line != Line::Name(0) {
                    return Err(StreamBroken("the stream from Gemini ended inside a line"));
                }
                // A complete last line is the event, even without its blank line.
                if self.event_has_data {
                    self.event_ends()
                } else {
                    self.ended
                }
            }
        };
        if ended {
            Ok(())
        } else {
            Err(StreamBroken(
                "the stream from Gemini ended without its final event",
            ))
        }
    }

    /// The usage of the last event/element/chunk that reported one, so far (cumulative for Gemini). None if none seen.
    pub fn tokens(&self) -> Option<Tokens> {
        let (key, object) = self.json.usage.as_ref()?;
        Tokens::from_usage(*key, object)
    }

    /// The WHATWG event-stream rules, as far as `data` lines go.
    fn observe_sse(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            if mem::take(&mut self.after_cr) && b == b'\n' {
                rest = tail;
                continue;
            }
            match (b, self.line) {
                (b'\r' | b'\n', _) => {
                    self.end_line();
                    self.after_cr = b == b'\r';
                }
                (_, Line::Data | Line::Skip) => {
                    // Most bytes are in data lines: take them up to the line's end at once.
                    let end = rest
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(rest.len());
                    if self.line == Line::Data {
                        self.data(&rest[..end]);
                    }
                    rest = &rest[end..];
                    continue;
                }
                (b' ', Line::DataStart) => self.line = Line::Data,
                (_, Line::DataStart) => {
                    // No space after the colon: this byte is already data.
                    self.line = Line::Data;
                    continue;
                }
                (b':', Line::Name(matched)) => {
                    self.line = if usize::from(matched) == DATA.len() {
                        self.begin_data();
                        Line::DataStart
                    } else {
                        Line::Skip
                    }
                }
                (_, Line::Name(matched)) => {
                    self.line = match DATA.get(usize::from(matched)) {
                        Some(&expected) if expected == b => Line::Name(matched + 1),
                        _ => Line::Name(NOT_DATA),
                    }
                }
            }
            rest = tail;
        }
    }

    fn end_line(&mut self) {
        match self.line {
            Line::Name(0) => self.dispatch(),
            // A bare `data` line is a data line with an empty value.
            Line::Name(matched) if usize::from(matched) == DATA.len() => self.begin_data(),
            _ => {}
        }
        self.line = Line::Name(0);
    }

    fn begin_data(&mut self) {
        if self.event_has_data {
            self.data(b"\n");
        }
        self.event_has_data = true;
    }

    fn data(&mut self, bytes: &[u8]) {
        self.json.feed(bytes);
        if self.done != NOT_DONE {
            for &b in bytes {
                self.done = match DONE.get(usize::from(self.done)) {
                    Some(&expected) if expected == b => self.done + 1,
                    _ => NOT_DONE,
                };
            }
        }
    }

    fn dispatch(&mut self) {
        // An event without data lines is not dispatched at all.
        if mem::take(&mut self.event_has_data) {
            self.ended = self.event_ends();
        }
        self.json.at = Cursor::default();
        self.json.capture.clear();
        self.done = 0;
    }

    fn event_ends(&self) -> bool {
        match self.framing {
            Framing::OpenAiSse => usize::from(self.done) == DONE.len(),
            _ => self.json.at.final_seen,
        }
    }
}

/// Where an SSE line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// In the field name: how much of it matched `data`, or `NOT_DATA`.
    /// `Name(0)` is the start of a line.
    Name(u8),
    /// Just after `data:`, where one space is skipped.
    DataStart,
    Data,
    /// A comment, or a field that does not matter.
    Skip,
}

/// The keys that matter here; any other string is `Other`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Key {
    #[default]
    Other,
    UsageMetadata,
    Usage,
    Error,
    Candidates,
    FinishReason,
    PromptFeedback,
    BlockReason,
}

/// The length of the longest key that matters, `promptFeedback`.
const KEY_MAX: usize = 14;
/// `Cursor::key_len` of a string that cannot be one of those keys.
const NOT_KEY: usize = KEY_MAX + 1;

impl Key {
    fn of(name: &[u8]) -> Key {
        match name {
            b"usageMetadata" => Key::UsageMetadata,
            b"usage" => Key::Usage,
            b"error" => Key::Error,
            b"candidates" => Key::Candidates,
            b"finishReason" => Key::FinishReason,
            b"promptFeedback" => Key::PromptFeedback,
            b"blockReason" => Key::BlockReason,
            _ => Key::Other,
        }
    }
}

/// An incremental scan of JSON text: enough structure to tell keys from text,
/// never a parse.
struct JsonScan {
    /// The depth of a response object's own keys.
    key_depth: u32,
    at: Cursor,
    /// The usage object being copied out.
    capture: Vec<u8>,
    /// The last complete usage object, and whose key it was under.
    usage: Option<(Key, Vec<u8>)>,
}

/// The scan's place in one JSON value (an SSE event's data, or the whole body).
#[derive(Default)]
struct Cursor {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The start of the current string, while it may still be a key that matters.
    key: [u8; KEY_MAX],
    key_len: usize,
    /// A string just closed: it was this key if a `:` follows.
    string_closed: Option<Key>,
    /// The value of this response-level key comes next.
    value_of: Option<Key>,
    /// The response-level key whose value the scan is in.
    within: Key,
    /// The response carried what only Gemini's last event carries.
    final_seen: bool,
    /// Copying a usage object, of the surface this key tells.
    capturing: Option<Key>,
    /// The top-level value closed, with this byte.
    closed_with: Option<u8>,
    /// More than whitespace followed the top-level value, or a close had nothing to close.
    trailing: bool,
}

impl JsonScan {
    fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let at = &self.at;
            if at.in_string && !at.escaped && at.key_len == NOT_KEY && at.capturing.is_none() {
                // Most bytes are text: skip to what can end it.
                match bytes[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                    Some(skip) => i += skip,
                    None => return,
                }
            }
            self.byte(bytes[i]);
            i += 1;
        }
    }

    fn byte(&mut self, b: u8) {
        if self.at.capturing.is_some() {
            if self.capture.len() < MAX_CAPTURE {
                self.capture.push(b);
            } else {
                self.at.capturing = None;
                self.capture = Vec::new();
            }
        }
        if self.at.in_string {
            self.at.string_byte(b);
            return;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return;
        }
        let at = &mut self.at;
        at.trailing |= at.closed_with.is_some();
        let string_closed = at.string_closed.take();
        let value_of = at.value_of.take();
        match b {
            b'"' => {
                at.in_string = true;
                at.key_len = 0;
            }
            b':' => {
                if let Some(key) = string_closed {
                    at.key(key, self.key_depth);
                }
            }
            b'{' | b'[' => {
                if b == b'{' && matches!(value_of, Some(Key::Usage | Key::UsageMetadata)) {
                    at.capturing = value_of;
                    self.capture.clear();
                    self.capture.push(b);
                }
                at.depth += 1;
            }
            b'}' | b']' => {
                if at.depth == 0 {
                    at.trailing = true;
                    return;
                }
                at.depth -= 1;
                if at.depth == 0 {
                    at.closed_with = Some(b);
                }
                if at.depth == self.key_depth {
                    if let Some(key) = at.capturing.take() {
                        // Swap rather than take: the buffers are reused event after event.
                        let last = self.usage.get_or_insert_with(|| (key, Vec::new()));
                        last.0 = key;
                        mem::swap(&mut last.1, &mut self.capture);
                        self.capture.clear();
                    }
                }
            }
            _ => {}
        }
    }
}

impl Cursor {
    fn string_byte(&mut self, b: u8) {
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            // Gemini's keys carry no escapes.
            self.escaped = true;
            self.key_len = NOT_KEY;
        } else if b == b'"' {
            self.in_string = false;
            self.string_closed = Some(match self.key.get(..self.key_len) {
                Some(name) => Key::of(name),
                None => Key::Other,
            });
        } else if self.key_len < KEY_MAX {
            self.key[self.key_len] = b;
            self.key_len += 1;
        } else {
            self.key_len = NOT_KEY;
        }
    }

    /// A key just read, at the current depth.
    fn key(&mut self, key: Key, key_depth: u32) {
        if self.depth == key_depth {
            self.within = key;
            match key {
                Key::Error => self.final_seen = true,
                Key::Usage | Key::UsageMetadata => self.value_of = Some(key),
                _ => {}
            }
        } else if (self.depth == key_depth + 1
            && self.within == Key::PromptFeedback
            && key == Key::BlockReason)
            || (self.depth == key_depth + 2
                && self.within == Key::Candidates
                && key == Key::FinishReason)
        {
            self.final_seen = true;
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    total_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    completion_tokens_details: Option<OpenAiDetails>,
}

#[derive(Deserialize)]
struct OpenAiDetails {
    reasoning_tokens: Option<u64>,
}

impl Tokens {
    fn from_usage(key: Key, object: &[u8]) -> Option<Tokens> {
        let (prompt, response, thoughts, total) = if key == Key::UsageMetadata {
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

/// The tokens of a whole unary JSON answer: Gemini's `usageMetadata` or OpenAI's `usage`.
pub fn unary_tokens(body: &[u8]) -> Option<Tokens> {
    let mut reader = StreamReader::new(Framing::Unary, None);
    reader.observe(body);
    reader.tokens()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(framing: Framing, chunks: &[&[u8]]) -> (bool, Option<Tokens>) {
        let mut reader = StreamReader::new(framing, None);
        for chunk in chunks {
            reader.observe(chunk);
        }
        (reader.finish().is_ok(), reader.tokens())
    }

    fn check(framing: Framing, chunks: &[&str]) -> bool {
        let chunks: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
        read(framing, &chunks).0
    }

    fn tokens(prompt: u64, response: u64, thoughts: u64, total: u64) -> Option<Tokens> {
        Some(Tokens {
            prompt,
            response,
            thoughts,
            total,
        })
    }

    /// Split in two at every byte, and fed one byte at a time, the stream reads as it does whole.
    fn reads_alike_however_split(framing: Framing, stream: &[u8]) -> (bool, Option<Tokens>) {
        let whole = read(framing, &[stream]);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(read(framing, &[a, b]), whole, "{framing:?} split at {at}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read(framing, &bytes), whole, "{framing:?} byte by byte");
        whole
    }

    /// Every cut before `end` (where the last end marker is complete) is broken.
    fn every_cut_before_is_broken(framing: Framing, stream: &[u8], end: usize) {
        for at in 1..end {
            assert!(
                !read(framing, &[&stream[..at]]).0,
                "{framing:?} cut at {at}"
            );
        }
    }

    fn gemini_sse(eol: &str) -> String {
        let events = [
            r#"{"candidates": [{"content": {"parts": [{"text": "a \"]}{[ data: \n\"finishReason\": 1"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 1,"totalTokenCount": 5}}"#,
            r#"{"candidates": [{"content": {"parts": [{"text": "b"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 49,"totalTokenCount": 2095,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 4}],"thoughtsTokenCount": 2042},"modelVersion": "gemini-2.5-flash"}"#,
        ];
        events
            .iter()
            .map(|e| format!("data: {e}{eol}{eol}"))
            .collect()
    }

    const JSON_ARRAY: &str = "[{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"x ] , [ { \\\" }\"}]}}],\n  \"usageMetadata\": {\"promptTokenCount\": 3, \"candidatesTokenCount\": 1, \"totalTokenCount\": 4}\n}\n,\n{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"]\"}]}, \"finishReason\": \"STOP\"}],\n  \"usageMetadata\": {\"promptTokenCount\": 3, \"candidatesTokenCount\": 7, \"thoughtsTokenCount\": 5}\n}\n]\n";

    const OPENAI_SSE: &str = concat!(
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"usage\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"[DONE]\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":20}}\n\n",
        "data: [DONE]\n\n",
    );

    const GEMINI_UNARY: &str = "{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello!\"}], \"role\": \"model\"}, \"finishReason\": \"STOP\"}],\n  \"usageMetadata\": {\n    \"promptTokenCount\": 4,\n    \"candidatesTokenCount\": 49,\n    \"totalTokenCount\": 2095,\n    \"thoughtsTokenCount\": 2042,\n    \"promptTokensDetails\": [{\"modality\": \"TEXT\", \"tokenCount\": 4}]\n  },\n  \"modelVersion\": \"gemini-2.5-flash\"\n}\n";

    // Ported from stream_check.rs.
    #[test]
    fn a_gemini_sse_stream_is_complete_after_its_final_event() {
        let first =
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}\r\n\r\n";
        let last = "data: {\"candidates\": [{\"finishReason\": \"STOP\"}]}\r\n\r\n";
        let error = "data: {\"error\": {\"code\": 500}}\r\n\r\n";
        assert!(check(Framing::GeminiSse, &[first, last]));
        assert!(check(Framing::GeminiSse, &[first, error]));
        let blocked =
            "data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"}}\r\n\r\n";
        assert!(
            check(Framing::GeminiSse, &[blocked]),
            "a blocked prompt's only event"
        );
        assert!(
            !check(Framing::GeminiSse, &[first, first]),
            "cut after two events"
        );
        assert!(
            !check(Framing::GeminiSse, &[last, first]),
            "finishReason must be last"
        );
    }

    #[test]
    fn a_final_event_split_anywhere_across_chunks_is_still_final() {
        let first = "data: {\"candidates\": [{\"content\": {}}]}\r\n\r\n";
        let last = "data: {\"candidates\": [{\"finishReason\": \"STOP\"}]}\r\n\r\n";
        let stream = format!("{first}{last}");
        for at in 1..stream.len() {
            let (a, b) = stream.split_at(at);
            assert!(check(Framing::GeminiSse, &[a, b]), "split at {at}");
        }
        let cut = format!("{first}{first}");
        for at in 1..cut.len() {
            let (a, b) = cut.split_at(at);
            assert!(!check(Framing::GeminiSse, &[a, b]), "cut, split at {at}");
        }
    }

    #[test]
    fn data_inside_an_events_text_does_not_start_an_event() {
        let last = "data: {\"candidates\": [{\"finishReason\": \"STOP\", \"text\": \"x data: y\"}]}\r\n\r\n";
        assert!(check(Framing::GeminiSse, &[last]));
    }

    #[test]
    fn arrays_and_openai_streams_need_their_end_marker() {
        assert!(check(
            Framing::GeminiJsonArray,
            &["[{\"a\": 1}\n", ",\n{}\n]"]
        ));
        assert!(!check(Framing::GeminiJsonArray, &["[{\"a\": 1}\n", ",\n{"]));
        assert!(check(
            Framing::OpenAiSse,
            &["data: {}\n\n", "data: [DONE]\n\n"]
        ));
        assert!(!check(Framing::OpenAiSse, &["data: {}\n\n"]));
    }

    #[test]
    fn a_declared_length_must_be_reached() {
        let mut reader = StreamReader::new(Framing::GeminiJsonArray, Some(10));
        reader.observe(b"[1,2]");
        assert!(reader.finish().is_err());
        reader.observe(b"     ");
        assert!(reader.finish().is_ok());
        reader.observe(b" ");
        assert!(reader.finish().is_err(), "past the declared length");
    }

    // New.
    #[test]
    fn gemini_sse_reads_alike_with_any_line_end_and_any_split() {
        for eol in ["\r\n", "\n", "\r"] {
            let stream = gemini_sse(eol);
            let whole = reads_alike_however_split(Framing::GeminiSse, stream.as_bytes());
            assert_eq!(whole, (true, tokens(4, 49, 2042, 2095)), "{eol:?}");
            // The final event's data line ends right before its two line ends.
            let end = stream.len() - 2 * eol.len();
            every_cut_before_is_broken(Framing::GeminiSse, stream.as_bytes(), end + 1);
            assert!(
                check(Framing::GeminiSse, &[&stream[..end + eol.len()]]),
                "no blank line"
            );
        }
    }

    #[test]
    fn a_json_array_reads_alike_however_split_and_is_cut_until_it_closes() {
        let whole = reads_alike_however_split(Framing::GeminiJsonArray, JSON_ARRAY.as_bytes());
        assert_eq!(whole, (true, tokens(3, 7, 5, 15)));
        let end = JSON_ARRAY.rfind(']').unwrap_or(0);
        every_cut_before_is_broken(Framing::GeminiJsonArray, JSON_ARRAY.as_bytes(), end + 1);
        assert!(
            !check(Framing::GeminiJsonArray, &[JSON_ARRAY, "[]"]),
            "bytes after the end"
        );
        assert!(!check(Framing::GeminiJsonArray, &["]"]), "nothing to close");
        assert!(!check(Framing::GeminiJsonArray, &[""]));
    }

    #[test]
    fn an_openai_stream_reads_alike_however_split_and_ends_with_done() {
        let whole = reads_alike_however_split(Framing::OpenAiSse, OPENAI_SSE.as_bytes());
        assert_eq!(whole, (true, tokens(5, 7, 8, 20)));
        let end = OPENAI_SSE.len() - 2;
        every_cut_before_is_broken(Framing::OpenAiSse, OPENAI_SSE.as_bytes(), end + 1);
        let crs = OPENAI_SSE.replace('\n', "\r");
        assert_eq!(read(Framing::OpenAiSse, &[crs.as_bytes()]), whole);
        assert!(
            !check(Framing::OpenAiSse, &[OPENAI_SSE, "data: {}\n\n"]),
            "[DONE] not last"
        );
        assert!(!check(Framing::OpenAiSse, &["data: [DONE]x\n\n"]));
        assert!(!check(Framing::OpenAiSse, &[""]));
    }

    #[test]
    fn a_unary_answer_is_always_complete_and_reads_alike_however_split() {
        let whole = reads_alike_however_split(Framing::Unary, GEMINI_UNARY.as_bytes());
        assert_eq!(whole, (true, tokens(4, 49, 2042, 2095)));
        assert!(check(Framing::Unary, &["{\"candi"]));
    }

    #[test]
    fn sse_fields_follow_the_whatwg_rules() {
        let last = "{\"candidates\": [{\"finishReason\": \"STOP\"}]}";
        assert!(
            check(Framing::GeminiSse, &[&format!("data:{last}\n\n")]),
            "no space"
        );
        let noise = format!(": keepalive\n\nevent: x\nid: 1\ndata: {last}\n\n: bye\n\n");
        assert!(
            check(Framing::GeminiSse, &[&noise]),
            "comments and other fields"
        );
        let split = "data: {\"candidates\": [{\"finishReason\":\r\ndata: \"STOP\"}]}\r\n\r\n";
        assert!(check(Framing::GeminiSse, &[split]), "data lines joined");
        assert!(!check(Framing::GeminiSse, &[&format!("datum: {last}\n\n")]));
        assert!(!check(
            Framing::GeminiSse,
            &[&format!("data: {last}\n\ndata\n\n")]
        ));
        assert!(check(Framing::GeminiSse, &[""]), "no event at all");
        assert!(
            !check(Framing::GeminiSse, &["\r\n\r\n"]),
            "no event, but bytes"
        );
        assert!(
            !check(Framing::GeminiSse, &[&format!("data: {last}")]),
            "cut mid-line"
        );
        assert!(
            !check(Framing::OpenAiSse, &["data: [DONE]"]),
            "cut mid-line"
        );
        assert!(
            check(Framing::OpenAiSse, &["data:[DONE]\r"]),
            "a lone CR ends the line"
        );
    }

    #[test]
    fn only_a_real_key_makes_an_event_final() {
        let text = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\\\"finishReason\\\": \\\"STOP\\\"\"}, {\"text\": \"error\"}]}}]}\n\n";
        assert!(!check(Framing::GeminiSse, &[text]));
        let args = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"args\": {\"error\": 1, \"finishReason\": 2}}}]}}]}\n\n";
        assert!(
            !check(Framing::GeminiSse, &[args]),
            "keys of a function's arguments"
        );
    }

    #[test]
    fn a_blocked_prompt_is_complete_with_its_tokens() {
        let blocked = b"data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\", \"safetyRatings\": []}, \"usageMetadata\": {\"promptTokenCount\": 7, \"totalTokenCount\": 7}}\r\n\r\n";
        assert_eq!(
            read(Framing::GeminiSse, &[blocked]),
            (true, tokens(7, 0, 0, 7))
        );
    }

    #[test]
    fn usage_split_across_chunks_is_read() {
        let stream = gemini_sse("\r\n");
        let at = stream.rfind("usageMeta").unwrap_or(0) + 5;
        let (a, b) = stream.split_at(at);
        let (_, found) = read(Framing::GeminiSse, &[a.as_bytes(), b.as_bytes()]);
        assert_eq!(found, tokens(4, 49, 2042, 2095));
        // A cut stream still tells the last usage it completed.
        let (ok, found) = read(Framing::GeminiSse, &[a.as_bytes()]);
        assert_eq!((ok, found), (false, tokens(4, 1, 0, 5)));
    }

    #[test]
    fn openai_usage_with_and_without_reasoning_tokens() {
        let chunk = |usage: &str| format!("data: {{\"choices\":[],\"usage\":{usage}}}\n\n");
        let plain = chunk("{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":20}");
        let reasoning = chunk("{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":20,\"completion_tokens_details\":{\"reasoning_tokens\":6}}");
        let null = chunk("null");
        let tokens_of = |chunks: &[&str]| {
            let chunks: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
            read(Framing::OpenAiSse, &chunks).1
        };
        assert_eq!(
            tokens_of(&[&null, &plain, "data: [DONE]\n\n"]),
            tokens(5, 7, 8, 20)
        );
        assert_eq!(tokens_of(&[&reasoning]), tokens(5, 7, 6, 20));
        assert_eq!(
            tokens_of(&[&plain, &null]),
            tokens(5, 7, 8, 20),
            "null is no usage"
        );
        assert_eq!(tokens_of(&[&null, &null]), None);
        let odd = chunk("{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":3}");
        assert_eq!(tokens_of(&[&odd]), tokens(9, 1, 0, 3), "saturating");
    }

    #[test]
    fn unary_tokens_of_both_surfaces() {
        assert_eq!(
            unary_tokens(GEMINI_UNARY.as_bytes()),
            tokens(4, 49, 2042, 2095)
        );
        let no_total = br#"{"usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3}}"#;
        assert_eq!(unary_tokens(no_total), tokens(2, 3, 0, 5));
        let openai = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":9,"completion_tokens_details":{"reasoning_tokens":4}}}"#;
        assert_eq!(unary_tokens(openai), tokens(3, 2, 4, 9));
        let openai_no_total = br#"{"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        assert_eq!(unary_tokens(openai_no_total), tokens(3, 2, 0, 5));
        let error =
            br#"[{"error": {"code": 400, "message": "usage", "status": "INVALID_ARGUMENT"}}]"#;
        assert_eq!(unary_tokens(error), None);
        assert_eq!(unary_tokens(br#"{"usage": null}"#), None);
        assert_eq!(
            unary_tokens(br#"{"usageMetadata": {"promptTokenCount": "x"}}"#),
            None
        );
        assert_eq!(
            unary_tokens(br#"{"a": {"usage": {"prompt_tokens": 1}}}"#),
            None,
            "nested"
        );
        assert_eq!(unary_tokens(b"not json"), None);
        assert_eq!(
            unary_tokens(br#"{"usageMetadata": {}}"#),
            tokens(0, 0, 0, 0)
        );
    }

    fn buffered(reader: &StreamReader) -> usize {
        let usage = reader
            .json
            .usage
            .as_ref()
            .map_or(0, |(_, bytes)| bytes.capacity());
        reader.json.capture.capacity() + usage
    }

    #[test]
    fn a_huge_event_is_not_buffered_and_keeps_the_framing() {
        let text = "x".repeat(3 << 20);
        let usage = "\"usageMetadata\": {\"promptTokenCount\": 1, \"totalTokenCount\": 2}";
        let event = format!("data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"{text}\"}}]}}, \"finishReason\": \"STOP\"}}], {usage}}}\r\n\r\n");
        let mut reader = StreamReader::new(Framing::GeminiSse, None);
        for chunk in event.as_bytes().chunks(64 << 10) {
            reader.observe(chunk);
            assert!(buffered(&reader) < 4096);
        }
        assert_eq!(
            (reader.finish(), reader.tokens()),
            (Ok(()), tokens(1, 0, 0, 2))
        );
        // A usage object past the cap is dropped, not buffered; the one before stays.
        let huge = format!("data: {{\"candidates\": [{{\"finishReason\": \"STOP\"}}], \"usageMetadata\": {{\"pad\": \"{text}\"}}}}\r\n\r\n");
        for chunk in huge.as_bytes().chunks(64 << 10) {
            reader.observe(chunk);
            assert!(buffered(&reader) <= MAX_CAPTURE + 4096);
        }
        assert_eq!(
            (reader.finish(), reader.tokens()),
            (Ok(()), tokens(1, 0, 0, 2))
        );
        let array = format!("[{{\"usageMetadata\": {{\"pad\": \"{text}\"}}}}\n]");
        let mut reader = StreamReader::new(Framing::GeminiJsonArray, None);
        for chunk in array.as_bytes().chunks(64 << 10) {
            reader.observe(chunk);
            assert!(buffered(&reader) <= MAX_CAPTURE);
        }
        assert_eq!((reader.finish(), reader.tokens()), (Ok(()), None));
    }
}
