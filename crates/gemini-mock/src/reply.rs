//! The mock's answer before it is put on the wire: status, content type and payload.
//!
//! Handlers decide *what* to answer; `deliver` decides *how* (delays, trickling, cut
//! connections). Keeping the two apart lets every transport scenario apply to every route.

use actix_web::http::StatusCode;
use bytes::Bytes;
use serde::Serialize;

/// Upstream's content type for JSON, success and error alike.
pub(crate) const JSON: &str = "application/json; charset=UTF-8";
pub(crate) const SSE: &str = "text/event-stream";
pub(crate) const HTML: &str = "text/html; charset=UTF-8";

pub(crate) struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub payload: Payload,
}

/// The frames of a streamed body, produced as the body is sent: a stream of thousands
/// of large events is never held whole, and stops being produced when the client stops
/// reading (actix polls a body only while its write buffer has room).
pub(crate) type Frames = Box<dyn Iterator<Item = Bytes>>;

pub(crate) enum Payload {
    /// One body, sent with a `Content-Length`.
    Full(Bytes),
    /// A chunked body: each frame is its own chunk, with the chunk delay between frames.
    Frames(Frames),
    /// Frames, then the body stream fails so the connection closes without the last chunk.
    FramesThenDrop(Frames),
}

impl Reply {
    pub fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            content_type,
            payload: Payload::Full(body.into()),
        }
    }

    /// 200 with a pretty-printed JSON body, as upstream answers unary calls.
    pub fn json<T: Serialize>(value: &T) -> Self {
        Reply::full(StatusCode::OK, JSON, pretty(value))
    }

    /// 200 with a compact JSON body (the OpenAI-compatible surface is not pretty-printed).
    pub fn compact_json<T: Serialize>(value: &T) -> Self {
        Reply::full(StatusCode::OK, JSON, compact(value))
    }

    pub fn frames(
        content_type: &'static str,
        frames: impl Iterator<Item = Bytes> + 'static,
    ) -> Self {
        Reply {
            status: StatusCode::OK,
            content_type,
            payload: Payload::Frames(Box::new(frames)),
        }
    }

    /// Turns a framed body into one that is cut off after its frames.
    pub fn make_drop(&mut self) {
        let payload = std::mem::replace(&mut self.payload, Payload::Full(Bytes::new()));
        self.payload = match payload {
            Payload::Frames(frames) => Payload::FramesThenDrop(frames),
            other => other,
        };
    }

    /// The whole body as one buffer (frames concatenated), for transport scenarios that
    /// re-slice it.
    pub fn into_body(self) -> Bytes {
        match self.payload {
            Payload::Full(b) => b,
            Payload::Frames(frames) | Payload::FramesThenDrop(frames) => {
                let mut all = Vec::new();
                for f in frames {
                    all.extend_from_slice(&f);
                }
                Bytes::from(all)
            }
        }
    }
}

/// Pretty JSON (2-space indent) with a trailing newline, like upstream's unary bodies.
pub(crate) fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut buf = pretty_bare(value);
    buf.push(b'\n');
    buf
}

/// Pretty JSON without the trailing newline, for elements of a JSON array.
pub(crate) fn pretty_bare<T: Serialize>(value: &T) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    if let Err(e) = serde_json::to_writer_pretty(&mut buf, value) {
        // Only possible with non-string map keys, which the mock's types never have.
        log::error!("mock: could not serialise a body: {e}");
        buf.clear();
        buf.extend_from_slice(b"{}");
    }
    buf
}

pub(crate) fn compact<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        log::error!("mock: could not serialise a body: {e}");
        b"{}".to_vec()
    })
}
