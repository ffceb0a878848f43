//! Streamed response bodies: a scripted body (data, pauses, a deliberate failure) and the
//! two framings upstream streams use, SSE (`data: <json>\r\n\r\n`) and the JSON array.
//!
//! Every streamed body carries the request's in-flight guard and a stream-outcome guard,
//! so a body dropped early (the client went away) is visible to tests as cancelled.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;
use tokio::time::Sleep;

use super::reply::{compact, pretty_bare};
use super::state::{InFlight, StreamOutcome};

/// One step of a scripted body.
pub(crate) enum Step {
    /// Yield these bytes as one body chunk.
    Data(Bytes),
    /// Pause; the server flushes what it has meanwhile.
    Wait(Duration),
    /// Fail the body: actix then closes the connection without finishing the message.
    Fail(&'static str),
}

/// A pause before a planned failure, so that the bytes before it reach the socket: actix
/// drops its unflushed write buffer when a body fails.
pub(crate) const FLUSH_BEFORE_FAIL: Duration = Duration::from_millis(20);

pub(crate) struct ScriptedBody {
    steps: Box<dyn Iterator<Item = Step>>,
    sleep: Option<Pin<Box<Sleep>>>,
    outcome: StreamOutcome,
    _in_flight: InFlight,
}

impl ScriptedBody {
    /// A body that keeps the request in flight until it ends or is dropped.
    pub fn new<S>(steps: S, in_flight: InFlight) -> Self
    where
        S: IntoIterator<Item = Step>,
        S::IntoIter: 'static,
    {
        ScriptedBody {
            steps: Box::new(steps.into_iter()),
            sleep: None,
            outcome: StreamOutcome::new(in_flight.shared()),
            _in_flight: in_flight,
        }
    }

    fn finish(&mut self) {
        self.outcome.finish();
    }
}

impl Stream for ScriptedBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
            }
            match this.steps.next() {
                Some(Step::Data(bytes)) => return Poll::Ready(Some(Ok(bytes))),
                Some(Step::Wait(d)) if d.is_zero() => {}
                Some(Step::Wait(d)) => this.sleep = Some(Box::pin(tokio::time::sleep(d))),
                Some(Step::Fail(why)) => {
                    this.finish();
                    this.steps = Box::new(std::iter::empty());
                    let err = io::Error::new(io::ErrorKind::ConnectionAborted, why);
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    this.finish();
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// Frames separated by `gap`.
pub(crate) fn paced(
    frames: impl Iterator<Item = Bytes>,
    gap: Duration,
) -> impl Iterator<Item = Step> {
    frames.enumerate().flat_map(move |(i, frame)| {
        let wait = (i > 0).then_some(Step::Wait(gap));
        wait.into_iter().chain(std::iter::once(Step::Data(frame)))
    })
}

/// Compact JSON, but with `": "` after keys as upstream's SSE lines have (docs/gemini-wire.md#sse-streams).
struct SseFormatter;

impl serde_json::ser::Formatter for SseFormatter {
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

fn event_end(lf: bool) -> &'static [u8] {
    if lf {
        b"\n\n"
    } else {
        b"\r\n\r\n"
    }
}

/// One native SSE event: `data: <single-line json>` and a blank line, CRLF unless `lf`.
pub(crate) fn sse_event<T: Serialize>(value: &T, lf: bool) -> Bytes {
    let mut buf = b"data: ".to_vec();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, SseFormatter);
    if let Err(e) = value.serialize(&mut ser) {
        log::error!("mock: could not serialise an SSE event: {e}");
    }
    buf.extend_from_slice(event_end(lf));
    Bytes::from(buf)
}

/// An SSE event in plain compact JSON, as upstream writes a mid-stream error event.
pub(crate) fn compact_event<T: Serialize>(value: &T, lf: bool) -> Bytes {
    let mut buf = b"data: ".to_vec();
    buf.extend_from_slice(&compact(value));
    buf.extend_from_slice(event_end(lf));
    Bytes::from(buf)
}

/// One OpenAI-compatible SSE event: compact JSON, LF framing.
pub(crate) fn openai_event<T: Serialize>(value: &T) -> Bytes {
    compact_event(value, true)
}

/// The `count` elements of a streamed JSON array as frames: `[` + pretty objects
/// joined by `\n,\n` + `\n]`. With `close` false the array is left open (the stream
/// is cut).
pub(crate) fn array_frames(
    elements: impl Iterator<Item = Vec<u8>>,
    count: usize,
    close: bool,
) -> impl Iterator<Item = Bytes> {
    elements.enumerate().map(move |(i, el)| {
        let mut buf = Vec::with_capacity(el.len() + 4);
        buf.extend_from_slice(if i == 0 { b"[" } else { b"\n,\n" });
        buf.extend_from_slice(&el);
        if close && i + 1 == count {
            buf.extend_from_slice(b"\n]");
        }
        Bytes::from(buf)
    })
}

/// A pretty JSON-array element.
pub(crate) fn array_element<T: Serialize>(value: &T) -> Vec<u8> {
    pretty_bare(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_put_a_space_after_keys_only() {
        let v = serde_json::json!({"a": [1, 2], "b": {"c": "x"}});
        let e = sse_event(&v, false);
        assert_eq!(
            &e[..],
            b"data: {\"a\": [1,2],\"b\": {\"c\": \"x\"}}\r\n\r\n"
        );
        assert!(sse_event(&v, true).ends_with(b"}\n\n"));
    }

    #[test]
    fn array_frames_join_with_comma_lines() {
        let els = vec![b"{}".to_vec(), b"{}".to_vec()];
        let all: Vec<u8> = array_frames(els.into_iter(), 2, true)
            .flat_map(|b| b.to_vec())
            .collect();
        assert_eq!(all, b"[{}\n,\n{}\n]");
    }
}
