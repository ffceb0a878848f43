//! A client's last frames survive the end of its connection.
//!
//! actix-ws reads the request payload until it would block and returns a payload error
//! as soon as it meets one, dropping bytes it has read but not yet decoded. A client
//! that sends its close frame and at once drops the connection (a relay that tears down
//! both sides together does) would then lose that close frame, and `live_closes` with
//! it. Turning the end of the connection into a clean end of the payload lets actix-ws
//! decode everything that arrived first.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::dev;
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// The payload of an upgraded connection, ending cleanly when the connection does.
pub(crate) struct EndsCleanly(pub dev::Payload);

impl Stream for EndsCleanly {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.get_mut().0).poll_next(cx) {
            Poll::Ready(Some(Err(e))) => {
                log::debug!("mock live: the client's connection ended: {e}");
                Poll::Ready(None)
            }
            other => other,
        }
    }
}
