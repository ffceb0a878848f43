//! An HTTP/2 answer: its head, and its body as a stream of chunks that gives
//! the flow-control window back as it is read (h2 leaves that to its user).

use super::StreamSlot;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use h2::RecvStream;
use http::{HeaderMap, StatusCode};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    Overflow(usize),
    #[error("the HTTP/2 stream broke: {0}")]
    Broken(#[from] h2::Error),
}

/// The answer to a request sent over HTTP/2. Dropping it resets the stream
/// if the body was not read to its end.
pub struct H2Response {
    status: StatusCode,
    headers: HeaderMap,
    body: RecvStream,
    /// The stream's place on its connection, held until the body is done.
    slot: Option<StreamSlot>,
}

impl H2Response {
    pub(super) fn new(response: http::Response<RecvStream>, slot: StreamSlot) -> H2Response {
        let (head, body) = response.into_parts();
        H2Response {
            status: head.status,
            headers: head.headers,
            body,
            slot: Some(slot),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The whole body, refused past `limit` bytes.
    pub async fn read_limited(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        use futures_util::StreamExt;
        let mut whole = BytesMut::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            if whole.len() + chunk.len() > limit {
                return Err(BodyError::Overflow(limit));
            }
            whole.extend_from_slice(&chunk);
        }
        Ok(whole.freeze())
    }
}

impl Stream for H2Response {
    type Item = Result<Bytes, h2::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.body.poll_data(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                // Read, so the server may send as much again; a slow reader
                // (a client that stops reading) holds the window shut.
                let _ = this.body.flow_control().release_capacity(chunk.len());
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.slot = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                // The stream ended with END_STREAM: its place is free now.
                this.slot = None;
                Poll::Ready(None)
            }
        }
    }
}
