//! The id of an interaction created with `"stream": true` arrives in its
//! first event (`interaction.created`), not in a JSON answer: the stream is
//! read on the side, as it goes to the client unchanged, until the id shows,
//! and the interaction is recorded for its client then.

use super::owned;
use super::passthrough;
use crate::ownership::{Kind, Owner};
use crate::state::AppState;
use crate::upstream::Reply;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The id is in the first event; a stream that has not named it in this many
/// bytes is not read further.
const MAX_SNIFFED: usize = 64 * 1024;

/// Answers a streamed create, recording the interaction once its id shows.
pub fn respond_recording(
    req: &HttpRequest,
    state: Arc<AppState>,
    reply: Reply,
    owner: Owner,
) -> HttpResponse {
    let response = passthrough::respond(req, reply);
    response.map_body(|_, body| {
        BoxBody::new(Sniff {
            inner: body,
            seen: Vec::new(),
            found: None,
            recorder: Some((state, owner)),
        })
    })
}

struct Sniff {
    inner: BoxBody,
    seen: Vec<u8>,
    found: Option<()>,
    recorder: Option<(Arc<AppState>, Owner)>,
}

impl Sniff {
    fn look(&mut self, chunk: &[u8]) {
        if self.found.is_some() || self.recorder.is_none() {
            return;
        }
        self.seen.extend_from_slice(chunk);
        // Only whole lines are read; the last, unfinished one waits for more.
        let complete = self
            .seen
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let id_event = self.seen[..complete]
            .split(|b| *b == b'\n')
            .filter_map(|line| line.strip_prefix(b"data:"))
            .filter_map(|data| serde_json::from_slice::<serde_json::Value>(data.trim_ascii()).ok())
            .find(|value| owned::created_id(Kind::Interaction, value).is_some());
        self.seen.drain(..complete);
        if let Some(value) = id_event {
            self.found = Some(());
            if let Some((state, owner)) = self.recorder.take() {
                actix_rt::spawn(async move {
                    owned::record_from_value(&state, Kind::Interaction, &owner, &value).await;
                });
            }
        } else if self.seen.len() > MAX_SNIFFED {
            log::warn!(
                "a streamed interaction named no id in its first {MAX_SNIFFED} bytes; not recorded"
            );
            self.recorder = None;
            self.seen = Vec::new();
        }
    }
}

impl MessageBody for Sniff {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let chunk = chunk.clone();
            self.look(&chunk);
        }
        polled
    }
}
