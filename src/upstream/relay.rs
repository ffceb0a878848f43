//! Relaying a streamed answer: the pump that moves Gemini's chunks to the
//! client's connection, unchanged and as they arrive, while a
//! [`StreamReader`] beside it counts the tokens and tells a finished stream
//! from a cut one.
//!
//! The pump, not the client's side, owns the in-flight permit and decides how
//! a stream ended, because a client that stops reading is never polled again:
//! when the client accepts no chunk for the stall timeout, the pump drops the
//! upstream call and the permit, and asks the client's side to cut the
//! connection.

use super::pool::Permit;
use super::stream_reader::{StreamBroken, StreamReader, Tokens};
use crate::errors::ErrorCode;
use crate::metrics::Metrics;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Chunks buffered between the upstream actor and the client's connection: a
/// few, so a slow client slows the upstream read instead of filling memory.
pub const STREAM_BUFFER: usize = 8;

/// The outcome code of a stream whose client went away or stopped reading;
/// like nginx's 499 and google.rpc's CANCELLED.
pub const CANCELLED: &str = "CANCELLED";

/// How a relayed stream ended, written once by the pump and read by the
/// access log when the client's side of the stream is dropped.
#[derive(Default)]
pub struct StreamEnd {
    code: OnceLock<&'static str>,
    tokens: Mutex<Option<Tokens>>,
    /// Told by the client's side when it has taken the last chunk (or is gone).
    drained: tokio::sync::Notify,
}

impl StreamEnd {
    /// The outcome code; `None` while the stream still runs, and for a stream
    /// whose pump never got to say (its client went away first).
    pub fn code(&self) -> Option<&'static str> {
        self.code.get().copied()
    }

    /// The tokens Gemini reported up to the end.
    pub fn tokens(&self) -> Option<Tokens> {
        *self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client's side took everything the pump sent, or went away.
    pub fn drained(&self) {
        self.drained.notify_one();
    }

    /// Says how it ended (the first word wins). Relays other than the
    /// stream pump (a Live session) say it too.
    pub fn set(&self, code: &'static str, tokens: Option<Tokens>) {
        *self.tokens.lock().unwrap_or_else(|e| e.into_inner()) = tokens;
        // The first word wins: a stream ends once.
        let _ = self.code.set(code);
    }
}

/// The client's side of a relayed stream.
pub struct Relay {
    pub chunks: mpsc::Receiver<Result<Bytes, StreamBroken>>,
    pub end: Arc<StreamEnd>,
    /// Resolves when the pump gave up on a client that stopped reading; the
    /// client's side then closes the connection. Dropped unresolved otherwise.
    pub stalled: oneshot::Receiver<()>,
}

/// Where a stream's tokens are counted.
pub struct TokenSink {
    pub metrics: Arc<Metrics>,
    pub client: Arc<str>,
    pub model_label: String,
    pub counts_tokens: bool,
    /// When the call started, for the first-byte histogram.
    pub started: Instant,
    /// The client's quotas, charged what Gemini reported up to the end.
    pub charge: Option<crate::quota::Charge>,
}

/// The timeouts of one relayed stream.
#[derive(Clone, Copy, Debug)]
pub struct StreamTimeouts {
    /// The longest wait for Gemini's next chunk.
    pub gap: Duration,
    /// The longest wait for the client to accept the next chunk.
    pub stall: Duration,
}

/// Starts relaying `payload` on the current thread; returns the client's side.
pub fn start<S, E>(
    payload: S,
    reader: StreamReader,
    timeouts: StreamTimeouts,
    sink: TokenSink,
    permit: Option<Permit>,
) -> Relay
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin + 'static,
    E: std::fmt::Display + 'static,
{
    let (tx, chunks) = mpsc::channel(STREAM_BUFFER);
    let (stall_tx, stalled) = oneshot::channel();
    let end = Arc::new(StreamEnd::default());
    let pump = Pump {
        tx,
        reader,
        timeouts,
        sink,
        end: end.clone(),
        stall_tx: Some(stall_tx),
        permit,
    };
    // The pump outlives the call that started it: it runs on this (the
    // upstream actor's) thread until the stream ends or the client goes away.
    actix_rt::spawn(pump.run(payload));
    Relay {
        chunks,
        end,
        stalled,
    }
}

struct Pump {
    tx: mpsc::Sender<Result<Bytes, StreamBroken>>,
    reader: StreamReader,
    timeouts: StreamTimeouts,
    sink: TokenSink,
    end: Arc<StreamEnd>,
    stall_tx: Option<oneshot::Sender<()>>,
    /// Freed when the upstream side is done, however it ends.
    permit: Option<Permit>,
}

/// Why the pump stopped.
enum Stop {
    Finished,
    Broken(ErrorCode, StreamBroken),
    ClientGone,
    ClientStalled,
}

impl Pump {
    async fn run<S, E>(mut self, mut payload: S)
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut first = true;
        let stop = loop {
            let next = tokio::select! {
                next = tokio::time::timeout(self.timeouts.gap, payload.next()) => next,
                // The client went away: dropping the payload closes the upstream connection.
                _ = self.tx.closed() => break Stop::ClientGone,
            };
            let chunk = match next {
                Err(_) => {
                    break Stop::Broken(
                        ErrorCode::UpstreamTimeout,
                        StreamBroken("no data from Gemini within the upstream timeout"),
                    )
                }
                Ok(None) => match self.reader.finish() {
                    Ok(()) => break Stop::Finished,
                    Err(broken) => break Stop::Broken(ErrorCode::UpstreamError, broken),
                },
                Ok(Some(Err(e))) => {
                    log::debug!("upstream stream broke: {e}");
                    break Stop::Broken(
                        ErrorCode::UpstreamError,
                        StreamBroken("the connection to Gemini broke mid-stream"),
                    );
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            if first {
                first = false;
                self.sink
                    .metrics
                    .stream_first_byte
                    .with_label_values(&[&self.sink.model_label])
                    .observe(self.sink.started.elapsed().as_secs_f64());
            }
            self.reader.observe(&chunk);
            match tokio::time::timeout(self.timeouts.stall, self.tx.send(Ok(chunk))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break Stop::ClientGone,
                Err(_) => break Stop::ClientStalled,
            }
        };
        drop(payload);
        self.end(stop).await;
    }

    async fn end(self, stop: Stop) {
        let Pump {
            tx,
            reader,
            timeouts,
            sink,
            end,
            mut stall_tx,
            permit,
        } = self;
        let tokens = reader.tokens();
        let code = match &stop {
            Stop::Finished => "OK",
            Stop::Broken(code, _) => code.as_str(),
            Stop::ClientGone | Stop::ClientStalled => CANCELLED,
        };
        if let (true, Some(tokens)) = (sink.counts_tokens, tokens) {
            sink.metrics
                .count_tokens(&sink.client, &sink.model_label, tokens);
        }
        if let Some(charge) = sink.charge {
            charge.tokens(tokens.map_or(0, |t| t.total));
        }
        // Before the client's side can learn the stream ended, so the access
        // log that its end writes finds the code.
        end.set(code, tokens);
        let client_gone = matches!(stop, Stop::ClientGone);
        match stop {
            Stop::Broken(_, broken) => {
                // The client's connection must end without a clean end of
                // stream. A full channel means the client is not reading; the
                // stall timeout cuts it then.
                let _ = tx.try_send(Err(broken));
            }
            Stop::ClientStalled => {
                cut_stalled_client(&mut stall_tx, timeouts.stall);
                return;
            }
            Stop::Finished | Stop::ClientGone => {}
        }
        // Gemini is done: its call and the in-flight place are free now, and
        // the client's side learns the end at once (the channel closes). What
        // is still queued must reach the client within the stall timeout
        // too, or a client that stopped reading near the end would hold its
        // connection for ever.
        drop(permit);
        drop(tx);
        if client_gone {
            return;
        }
        let stalled = tokio::time::timeout(timeouts.stall, end.drained.notified())
            .await
            .is_err();
        if stalled {
            cut_stalled_client(&mut stall_tx, timeouts.stall);
        }
    }
}

/// Asks the client's side to shut the connection of a client that stopped reading.
fn cut_stalled_client(stall_tx: &mut Option<oneshot::Sender<()>>, stall: Duration) {
    log::info!(
        "a client accepted no data for {} s; its stream is cut",
        stall.as_secs()
    );
    if let Some(stalled) = stall_tx.take() {
        let _ = stalled.send(());
    }
}
