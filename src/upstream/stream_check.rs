//! Telling a finished upstream stream from a cut one.
//!
//! awc reports a connection that closes mid-body as a clean end of body (the fix
//! ntex made in its PR #545 is not in awc 3.11). Passing that on as a clean end
//! would tell the client its answer was complete when it was not, so each
//! framing's own end marker is checked instead: a declared length reached, a
//! final Gemini event (with `finishReason` or an error), the closing `]` of a
//! JSON array, or OpenAI's `data: [DONE]`.

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
    /// Gemini SSE: whether the latest event carried `finishReason` or `error`.
    final_event_seen: bool,
}

impl StreamCheck {
    pub fn new(kind: StreamKind, headers: &HeaderMap) -> StreamCheck {
        StreamCheck {
            kind,
            declared_length: headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            received: 0,
            tail: Vec::with_capacity(TAIL_BYTES * 2),
            final_event_seen: false,
        }
    }

    pub fn observe(&mut self, chunk: &[u8]) {
        self.received += chunk.len() as u64;
        if self.kind == StreamKind::GeminiSse && contains(chunk, b"data: ") {
            // Each event is a whole response; only the last one decides.
            let last_event = rfind(chunk, b"data: ").map_or(chunk, |at| &chunk[at..]);
            self.final_event_seen =
                contains(last_event, b"\"finishReason\"") || contains(last_event, b"\"error\"");
        } else if self.kind == StreamKind::GeminiSse {
            self.final_event_seen |= contains(chunk, b"\"finishReason\"");
        }
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > TAIL_BYTES * 2 {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
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
