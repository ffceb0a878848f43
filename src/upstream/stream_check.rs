//! Telling a finished upstream stream from a cut one.
//!
//! awc reports a connection that closes mid-body as a clean end of body (the fix
//! ntex made in its PR #545 is not in awc 3.11). Passing that on as a clean end
//! would tell the client its answer was complete when it was not, so each
//! framing's own end marker is checked instead: a declared length reached, a
//! final Gemini event (with `finishReason`, an error, or the `blockReason` of a
//! blocked prompt), the closing `]` of a JSON array, or OpenAI's `data: [DONE]`.

use super::forward::{StreamBroken, StreamKind};
use awc::http::header::{HeaderMap, CONTENT_LENGTH};

/// Bytes of the stream's tail kept to look for end markers: more than any
/// marker and the JSON around it.
const TAIL_BYTES: usize = 512;

pub struct StreamCheck {
    kind: StreamKind,
    declared_length: Option<u64>,
    received: u64,
    /// The last bytes seen, for the end markers.
    tail: Vec<u8>,
    /// Gemini SSE: whether the latest event was one Gemini ends a stream with.
    final_event_seen: bool,
}

/// What only the last event of a Gemini SSE stream carries: the candidate's
/// `finishReason`, an error, or the `blockReason` of a blocked prompt (which
/// Gemini sends as the stream's only event, with no candidate to finish).
const FINAL_EVENT_MARKERS: &[&[u8]] = &[b"\"finishReason\"", b"\"error\"", b"\"blockReason\""];
/// An SSE event starts at a line start (its JSON is one line, so a `data: `
/// inside a string never follows a newline).
const EVENT_START: &[u8] = b"\ndata: ";
/// Bytes of the previous chunks searched again with each new one: chunk
/// boundaries fall anywhere, so a marker can straddle two chunks. At least the
/// longest marker's length.
const MARKER_OVERLAP: usize = 16;

impl StreamCheck {
    pub fn new(kind: StreamKind, headers: &HeaderMap) -> StreamCheck {
        StreamCheck {
            kind,
            declared_length: headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            received: 0,
            // The start of the stream is a line start too (see EVENT_START).
            tail: b"\n".to_vec(),
            final_event_seen: false,
        }
    }

    pub fn observe(&mut self, chunk: &[u8]) {
        self.received += chunk.len() as u64;
        let seen_before = self.tail.len();
        self.tail.extend_from_slice(chunk);
        if self.kind == StreamKind::GeminiSse {
            self.observe_sse_events(seen_before.saturating_sub(MARKER_OVERLAP));
        }
        if self.tail.len() > TAIL_BYTES * 2 {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
    }

    /// Updates `final_event_seen` from the tail's bytes after `from`.
    fn observe_sse_events(&mut self, from: usize) {
        let window = &self.tail[from..];
        self.final_event_seen = match rfind(window, EVENT_START) {
            // Each event is a whole response; only the last one decides.
            Some(at) => is_final_event(&window[at..]),
            // Still inside the event an earlier chunk began.
            None => self.final_event_seen || is_final_event(window),
        };
    }

    /// Called at the upstream's end of body: was that the real end?
    pub fn finish(&self) -> Result<(), StreamBroken> {
        if let Some(length) = self.declared_length {
            return if self.received == length {
                Ok(())
            } else {
                Err(StreamBroken(
                    "Gemini's answer ended before its declared length",
                ))
            };
        }
        let tail = trim_end(&self.tail);
        let complete = match self.kind {
            StreamKind::Unary => true,
            StreamKind::GeminiSse => self.final_event_seen || self.received == 0,
            StreamKind::GeminiJsonArray => tail.ends_with(b"]"),
            StreamKind::OpenAiSse => tail.ends_with(b"data: [DONE]"),
        };
        if complete {
            Ok(())
        } else {
            Err(StreamBroken(
                "the stream from Gemini ended without its final event",
            ))
        }
    }
}

fn is_final_event(event: &[u8]) -> bool {
    FINAL_EVENT_MARKERS
        .iter()
        .any(|marker| contains(event, marker))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: StreamKind, chunks: &[&str]) -> bool {
        let mut check = StreamCheck::new(kind, &HeaderMap::new());
        for chunk in chunks {
            check.observe(chunk.as_bytes());
        }
        check.finish().is_ok()
    }

    #[test]
    fn a_gemini_sse_stream_is_complete_after_its_final_event() {
        let first =
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}\r\n\r\n";
        let last = "data: {\"candidates\": [{\"finishReason\": \"STOP\"}]}\r\n\r\n";
        let error = "data: {\"error\": {\"code\": 500}}\r\n\r\n";
        assert!(check(StreamKind::GeminiSse, &[first, last]));
        assert!(check(StreamKind::GeminiSse, &[first, error]));
        let blocked =
            "data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"}}\r\n\r\n";
        assert!(
            check(StreamKind::GeminiSse, &[blocked]),
            "a blocked prompt's only event"
        );
        assert!(
            !check(StreamKind::GeminiSse, &[first, first]),
            "cut after two events"
        );
        assert!(
            !check(StreamKind::GeminiSse, &[last, first]),
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
            assert!(check(StreamKind::GeminiSse, &[a, b]), "split at {at}");
        }
        let cut = format!("{first}{first}");
        for at in 1..cut.len() {
            let (a, b) = cut.split_at(at);
            assert!(!check(StreamKind::GeminiSse, &[a, b]), "cut, split at {at}");
        }
    }

    #[test]
    fn data_inside_an_events_text_does_not_start_an_event() {
        let last = "data: {\"candidates\": [{\"finishReason\": \"STOP\", \"text\": \"x data: y\"}]}\r\n\r\n";
        assert!(check(StreamKind::GeminiSse, &[last]));
    }

    #[test]
    fn arrays_and_openai_streams_need_their_end_marker() {
        assert!(check(
            StreamKind::GeminiJsonArray,
            &["[{\"a\": 1}\n", ",\n{}\n]"]
        ));
        assert!(!check(
            StreamKind::GeminiJsonArray,
            &["[{\"a\": 1}\n", ",\n{"]
        ));
        assert!(check(
            StreamKind::OpenAiSse,
            &["data: {}\n\n", "data: [DONE]\n\n"]
        ));
        assert!(!check(StreamKind::OpenAiSse, &["data: {}\n\n"]));
    }

    #[test]
    fn a_declared_length_must_be_reached() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_LENGTH,
            awc::http::header::HeaderValue::from_static("10"),
        );
        let mut check = StreamCheck::new(StreamKind::GeminiJsonArray, &headers);
        check.observe(b"[1,2]");
        assert!(check.finish().is_err());
        check.observe(b"     ");
        assert!(check.finish().is_ok());
    }
}
