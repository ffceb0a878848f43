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
    /// Events of the resource APIs (an interaction's stream): relayed as they
    /// come, ending where Gemini ends them, their tokens read by the route.
    Events,
}

pub use super::usage::Tokens;

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
                // An interaction's events carry its usage one level down too
                // (`{"interaction": {"usage": …}}`).
                key_depth: 1 + u32::from(matches!(
                    framing,
                    Framing::GeminiJsonArray | Framing::Events
                )),
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
            Framing::GeminiSse | Framing::OpenAiSse | Framing::Events => self.observe_sse(chunk),
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
            Framing::Unary | Framing::Events => true,
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
        Tokens::from_usage(*key == Key::UsageMetadata, object)
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

/// The tokens of a whole unary answer: Gemini's `usageMetadata` or OpenAI's
/// `usage` — also of a unary method answered as events (`alt=sse`), since
/// the scan finds the last usage object whatever surrounds it.
pub fn unary_tokens(body: &[u8]) -> Option<Tokens> {
    let mut reader = StreamReader::new(Framing::Unary, None);
    reader.observe(body);
    reader.tokens()
}

#[cfg(test)]
#[path = "stream_reader_tests.rs"]
mod tests;
