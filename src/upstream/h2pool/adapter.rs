//! Where an exchange meets the two clients: a request goes over the HTTP/2
//! pool when its origin speaks HTTP/2, else through awc as before, and the
//! answer reads the same either way, so classification, retries, deadlines
//! and the stream relay do not care which carried it.

use super::{BodyError, H2Error, H2Pool, H2Response, Head};
use crate::errors::ErrorCode;
use crate::upstream::classify::{self, Failure};
use awc::error::PayloadError;
use awc::http::header::{HeaderName, HeaderValue};
use awc::http::{Method, StatusCode, Uri};
use awc::{Client, ClientResponse};
use bytes::Bytes;
use futures_util::Stream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Gemini's answer, from whichever client carried the request.
pub(in crate::upstream) enum Answer {
    Awc(ClientResponse),
    H2(H2Response),
}

/// Sends one request: over HTTP/2 when `url`'s origin speaks it, else with
/// awc. Every call in flight holds this future while it waits, so it
/// borrows the attempt's parts, and it is not an `async fn`: one of those
/// keeps a second copy of its arguments.
pub(in crate::upstream) fn send<'a>(
    client: &'a Client,
    h2: &'a H2Pool,
    method: &'a Method,
    url: &'a str,
    headers: &'a [(HeaderName, HeaderValue)],
    body: &'a Bytes,
) -> impl Future<Output = Result<Answer, Failure>> + 'a {
    let head = url.parse::<Uri>().ok().map(|uri| Head {
        method,
        uri,
        headers,
    });
    async move {
        if let Some(head) = &head {
            match h2.send(head, body).await {
                Ok(Some(answer)) => return Ok(Answer::H2(answer)),
                Ok(None) => {}
                Err(e) => {
                    if matches!(e, H2Error::RefusedCertificate(_)) {
                        log::warn!(
                            "{e}; an upstream or a TLS-inspecting egress with a private CA needs its root in UPSTREAM_CA_FILE"
                        );
                    } else {
                        log::debug!("upstream call over HTTP/2 failed before an answer: {e}");
                    }
                    return Err(classify_h2_error(&e));
                }
            }
        }
        // Boxed: every call in flight holds this future while it waits, and
        // awc's request is large; over HTTP/2 it is never built.
        Box::pin(send_with_awc(client, method, url, headers, body)).await
    }
}

async fn send_with_awc(
    client: &Client,
    method: &Method,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: &Bytes,
) -> Result<Answer, Failure> {
    let mut request = client.request(method.clone(), url);
    for header in headers {
        request = request.insert_header(header.clone());
    }
    match request.send_body(body.clone()).await {
        Ok(response) => Ok(Answer::Awc(response)),
        Err(e) => {
            if classify::is_refused_certificate(&e) {
                log::warn!(
                    "upstream TLS certificate refused ({e}); an upstream or a TLS-inspecting egress with a private CA needs its root in UPSTREAM_CA_FILE"
                );
            } else {
                log::debug!("upstream call failed before an answer: {e}");
            }
            Err(classify::classify_send_error(&e))
        }
    }
}

impl Answer {
    pub(in crate::upstream) fn status(&self) -> StatusCode {
        match self {
            Answer::Awc(response) => response.status(),
            Answer::H2(response) => response.status(),
        }
    }

    /// Every header of the answer (awc's and the http crate's maps differ).
    pub(in crate::upstream) fn headers(
        &self,
    ) -> Box<dyn Iterator<Item = (&HeaderName, &HeaderValue)> + '_> {
        match self {
            Answer::Awc(response) => Box::new(response.headers().iter()),
            Answer::H2(response) => Box::new(response.headers().iter()),
        }
    }

    pub(in crate::upstream) fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        match self {
            Answer::Awc(response) => response.headers().get(name),
            Answer::H2(response) => response.headers().get(name),
        }
    }

    /// The whole body, refused past `limit` bytes.
    pub(in crate::upstream) async fn body(&mut self, limit: usize) -> Result<Bytes, Failure> {
        match self {
            Answer::Awc(response) => response
                .body()
                .limit(limit)
                .await
                .map_err(|e| classify::classify_payload_error(&e)),
            Answer::H2(response) => response.read_limited(limit).await.map_err(|e| match e {
                BodyError::Overflow(_) => classify::classify_payload_error(&PayloadError::Overflow),
                BodyError::Broken(e) => {
                    log::debug!("upstream answer over HTTP/2 broke: {e}");
                    Failure::new(
                        ErrorCode::UpstreamError,
                        "the connection to Gemini broke in the middle of the answer",
                    )
                }
            }),
        }
    }
}

/// A chunk error from either client, for the relay's log.
#[derive(Debug, thiserror::Error)]
pub(in crate::upstream) enum ChunkError {
    #[error(transparent)]
    Awc(#[from] PayloadError),
    #[error(transparent)]
    H2(#[from] h2::Error),
}

impl Stream for Answer {
    type Item = Result<Bytes, ChunkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Answer::Awc(response) => Pin::new(response)
                .poll_next(cx)
                .map(|next| next.map(|chunk| chunk.map_err(ChunkError::from))),
            Answer::H2(response) => Pin::new(response)
                .poll_next(cx)
                .map(|next| next.map(|chunk| chunk.map_err(ChunkError::from))),
        }
    }
}

/// Mirrors `classify_send_error`: nothing of an answer came back, so every
/// failure to connect or of the stream is safe to try again.
fn classify_h2_error(error: &H2Error) -> Failure {
    match error {
        H2Error::ConnectTimeout => Failure::new(
            ErrorCode::UpstreamUnavailable,
            "could not connect to Gemini in time",
        )
        .retryable(),
        H2Error::Connect(_) | H2Error::RefusedCertificate(_) => Failure::new(
            ErrorCode::UpstreamUnavailable,
            "could not connect to Gemini",
        )
        .retryable(),
        H2Error::Stream(_) | H2Error::NotSent(_) => Failure::new(
            ErrorCode::UpstreamUnavailable,
            "the connection to Gemini closed before an answer",
        )
        .retryable(),
        H2Error::Request(_) => Failure::new(
            ErrorCode::UpstreamError,
            "the request could not be sent to Gemini",
        ),
    }
}
