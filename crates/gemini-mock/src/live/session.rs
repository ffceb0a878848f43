//! One Live session after the upgrade: a reader that takes the client's frames (and
//! answers pings and close frames at once, whatever the session is doing), and a
//! conversation task that plays the protocol: setup, turns, tool calls and faults.
//!
//! They are two tasks because answering a turn can block for as long as the client
//! does not read (the mock's send queue is bounded, which is how a slow client is
//! felt), and the mock must still see the client's close frame meanwhile.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::knobs::{LiveFault, LiveKnobs};
use super::messages::{
    self, ClientContent, ClientMessage, RealtimeInput, ServerMessage, ToolResponse,
};
use super::record::SessionRecord;
use crate::auth::check_quota;
use crate::errors::ApiError;
use crate::events::{Pieces, Words};
use crate::request::count_words;
use crate::MockConfig;

/// Close reasons longer than this arrive cut: a close frame's payload is at most 125
/// bytes, two of which carry the code.
const MAX_REASON: usize = 123;
/// A refused session is closed when the client's first message (its setup) arrives, or
/// after this long without one.
const REFUSAL_GRACE: Duration = Duration::from_millis(500);
/// Without `audioStreamEnd` or `activityEnd`, audio counts as spoken once none has come
/// for this long: the mock's stand-in for the service's voice activity detection.
const AUDIO_QUIET: Duration = Duration::from_millis(300);
/// After the mock closes, how long it waits for the client's close frame before it
/// drops the connection.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// A prompt containing this word (any case) makes the model call the setup's first
/// declared function before it answers.
pub(crate) const TOOL_TRIGGER: &str = "weather";
/// `goAway.timeLeft`, as protobuf JSON writes a Duration.
const GO_AWAY_TIME_LEFT: &str = "10s";
const INTERNAL: &str = "Internal error encountered.";
/// A deadline that stands for "none": longer than any test session.
const NO_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Audio bytes per prompt token: 16 kHz 16-bit PCM at the documented 32 tokens a second.
const AUDIO_BYTES_PER_TOKEN: usize = 1000;

/// A close frame the mock sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    /// `reason` cut to what fits in a close frame, on a character boundary.
    pub fn new(code: u16, reason: &str) -> Close {
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Close {
            code,
            reason: reason[..end].to_owned(),
        }
    }

    /// The close for an upstream error: the code the service uses for its status
    /// (docs/gemini-wire.md#the-live-api) and the error's message as the reason.
    pub fn for_error(e: &ApiError) -> Close {
        let code = match e.status {
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => 1007,
            "PERMISSION_DENIED" | "NOT_FOUND" | "UNAUTHENTICATED" => 1008,
            _ => 1011,
        };
        Close::new(code, &e.message)
    }
}

/// What the upgrade decided for the session.
pub(crate) struct Plan {
    /// Close as soon as the client speaks, instead of serving it.
    pub refusal: Option<Close>,
    pub key: String,
    pub version: &'static str,
    pub knobs: LiveKnobs,
    pub cfg: Arc<MockConfig>,
}

/// Runs the session to its end; holds `record` until then.
pub(crate) async fn run(
    session: Session,
    mut stream: AggregatedMessageStream,
    record: SessionRecord,
    plan: Plan,
) {
    let record = Rc::new(record);
    let (tx, rx) = mpsc::unbounded_channel();
    let talk = Conversation::new(session.clone(), Rc::clone(&record), rx, plan);
    let mut talk = actix_web::rt::spawn(talk.run());
    let mut talk_done = false;
    let mut deadline: Option<Instant> = None;
    loop {
        let wait = deadline.unwrap_or_else(|| Instant::now() + NO_DEADLINE);
        tokio::select! {
            msg = stream.recv() => match msg {
                Some(Ok(AggregatedMessage::Text(text))) => {
                    let data = text.into_bytes();
                    record.message(false, &data);
                    let _ = tx.send(data);
                }
                Some(Ok(AggregatedMessage::Binary(data))) => {
                    record.message(true, &data);
                    let _ = tx.send(data);
                }
                Some(Ok(AggregatedMessage::Ping(payload))) => {
                    if session.clone().pong(&payload).await.is_err() {
                        break;
                    }
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(reason))) => {
                    answer_close(&session, &record, reason).await;
                    break;
                }
                Some(Err(e)) => {
                    log::debug!("mock live: protocol error from the client: {e}");
                    break;
                }
                None => break,
            },
            _ = &mut talk, if !talk_done => {
                talk_done = true;
                // The conversation only ends by closing (or on a dead connection): the
                // client has a moment to answer the close frame.
                deadline = Some(Instant::now() + CLOSE_WAIT);
            }
            _ = sleep_until(wait), if deadline.is_some() => break,
        }
    }
    if !talk_done {
        talk.abort();
        let _ = talk.await;
    }
}

/// Answers a client's close frame with one echoing its code, as RFC 6455 asks, unless
/// the mock has already sent its own.
async fn answer_close(session: &Session, record: &SessionRecord, reason: Option<CloseReason>) {
    let (code, text) = match &reason {
        Some(r) => (u16::from(r.code), r.description.clone().unwrap_or_default()),
        None => (1005, String::new()),
    };
    record.client_close(code, &text);
    let echo = reason.map(|r| CloseReason::from(r.code));
    if session.clone().close(echo).await.is_ok() {
        record.mock_close(code, "");
    }
}

/// The protocol side of a session.
struct Conversation {
    session: Option<Session>,
    record: Rc<SessionRecord>,
    rx: mpsc::UnboundedReceiver<Bytes>,
    plan: Plan,
    /// The setup's model, bare.
    model: String,
    /// The setup's first declared function, which the trigger word calls.
    function: Option<String>,
    calls: usize,
    /// `clientContent` text waiting for `turnComplete`, and the words so far.
    pending_text: Option<String>,
    pending_words: u32,
    /// Audio bytes since the last answered audio turn, and when they count as spoken.
    audio_bytes: usize,
    audio_due: Option<Instant>,
    /// The function call awaiting its response, and the turn it belongs to.
    waiting_tool: Option<(String, Turn)>,
}

/// A turn to answer.
struct Turn {
    /// What the answer echoes.
    said: String,
    prompt_tokens: u32,
    modality: &'static str,
}

/// The session is over (closed by either side); the conversation stops.
struct Ended;

impl Conversation {
    fn new(
        session: Session,
        record: Rc<SessionRecord>,
        rx: mpsc::UnboundedReceiver<Bytes>,
        plan: Plan,
    ) -> Self {
        Conversation {
            session: Some(session),
            record,
            rx,
            plan,
            model: String::new(),
            function: None,
            calls: 0,
            pending_text: None,
            pending_words: 0,
            audio_bytes: 0,
            audio_due: None,
            waiting_tool: None,
        }
    }

    fn fault(&self) -> Option<LiveFault> {
        self.plan.knobs.fault
    }

    async fn run(mut self) {
        let _ = self.play().await;
    }

    async fn play(&mut self) -> Result<(), Ended> {
        if let Some(close) = self.plan.refusal.take() {
            // The client's first message is awaited so that a client which sends its
            // setup right after the handshake (both SDKs do) meets the close while
            // reading, as it does against the real service, and never while sending.
            let _ = timeout(REFUSAL_GRACE, self.rx.recv()).await;
            return self.close(close).await;
        }
        let first = self.rx.recv().await.ok_or(Ended)?;
        let setup = match messages::parse(&first) {
            Ok(ClientMessage::Setup(setup)) => setup,
            Ok(_) => {
                // The service's wording is not known; the code is INVALID_ARGUMENT's.
                let reason = "Invalid request: the first message of a session must be setup.";
                return self.close(Close::new(1007, reason)).await;
            }
            Err(reason) => return self.close(Close::new(1007, &reason)).await,
        };
        let model = setup.model.as_deref().unwrap_or_default();
        let id = model.strip_prefix("models/").unwrap_or(model);
        let version = self.plan.version;
        if !super::is_live_model(version, id) {
            let e =
                ApiError::model_not_found(&format!("models/{id}"), version, "bidiGenerateContent");
            return self.close(Close::for_error(&e)).await;
        }
        let exhausted = match check_quota(&self.plan.cfg, &self.plan.key, id) {
            Err(e) => Some(e),
            Ok(()) if self.fault() == Some(LiveFault::Quota) => Some(quota_error(id)),
            Ok(()) => None,
        };
        if let Some(e) = exhausted {
            return self.close(Close::for_error(&e)).await;
        }
        if self.fault() == Some(LiveFault::Silence) {
            return self.drain().await;
        }
        self.model = id.to_owned();
        self.function = setup.first_function().map(str::to_owned);
        self.send(&ServerMessage::setup_complete()).await?;
        if self.fault() == Some(LiveFault::GoAway) {
            self.send(&ServerMessage::go_away(GO_AWAY_TIME_LEFT))
                .await?;
        }
        if self.fault() == Some(LiveFault::NoAnswer) {
            return self.drain().await;
        }
        self.converse().await
    }

    /// Reads and ignores the client until it goes away.
    async fn drain(&mut self) -> Result<(), Ended> {
        while self.rx.recv().await.is_some() {}
        Err(Ended)
    }

    async fn converse(&mut self) -> Result<(), Ended> {
        loop {
            let audio_due = self.audio_due;
            let wait = audio_due.unwrap_or_else(|| Instant::now() + NO_DEADLINE);
            tokio::select! {
                data = self.rx.recv() => {
                    let data = data.ok_or(Ended)?;
                    match messages::parse(&data) {
                        Ok(message) => self.on_message(message).await?,
                        Err(reason) => return self.close(Close::new(1007, &reason)).await,
                    }
                }
                _ = sleep_until(wait), if audio_due.is_some() => self.answer_audio().await?,
            }
        }
    }

    async fn on_message(&mut self, message: ClientMessage) -> Result<(), Ended> {
        match message {
            // The service allows one setup; later ones are ignored rather than guessed at.
            ClientMessage::Setup(_) => Ok(()),
            ClientMessage::ClientContent(c) => self.on_content(c).await,
            ClientMessage::RealtimeInput(r) => self.on_realtime(r).await,
            ClientMessage::ToolResponse(t) => self.on_tool_response(t).await,
        }
    }

    async fn on_content(&mut self, content: ClientContent) -> Result<(), Ended> {
        let (text, words) = content.prompt();
        if text.is_some() {
            self.pending_text = text;
        }
        self.pending_words = self.pending_words.saturating_add(words);
        if content.turn_complete != Some(true) {
            return Ok(());
        }
        let turn = Turn {
            said: self.pending_text.take().unwrap_or_default(),
            prompt_tokens: std::mem::take(&mut self.pending_words).max(1),
            modality: "TEXT",
        };
        self.answer(turn).await
    }

    async fn on_realtime(&mut self, input: RealtimeInput) -> Result<(), Ended> {
        let audio: usize = input
            .audio
            .iter()
            .chain(input.media_chunks.iter().flatten())
            .map(messages::Blob::decoded_len)
            .sum();
        if audio > 0 {
            self.audio_bytes = self.audio_bytes.saturating_add(audio);
            self.audio_due = Some(Instant::now() + AUDIO_QUIET);
        }
        if let Some(text) = input.text {
            let turn = Turn {
                prompt_tokens: count_words(&text).max(1),
                said: text,
                modality: "TEXT",
            };
            self.answer(turn).await?;
        }
        if input.audio_stream_end == Some(true) || input.activity_end.is_some() {
            self.answer_audio().await?;
        }
        Ok(())
    }

    async fn answer_audio(&mut self) -> Result<(), Ended> {
        self.audio_due = None;
        let bytes = std::mem::take(&mut self.audio_bytes);
        if bytes == 0 {
            return Ok(());
        }
        let tokens = u32::try_from(bytes / AUDIO_BYTES_PER_TOKEN).unwrap_or(u32::MAX);
        let turn = Turn {
            said: format!("{bytes} bytes of audio"),
            prompt_tokens: tokens.max(1),
            modality: "AUDIO",
        };
        self.answer(turn).await
    }

    async fn on_tool_response(&mut self, response: ToolResponse) -> Result<(), Ended> {
        let Some((call_id, turn)) = self.waiting_tool.take() else {
            return Ok(());
        };
        let mut responses = response.function_responses.unwrap_or_default();
        let matching = responses
            .iter()
            .position(|r| r.id.as_deref() == Some(call_id.as_str()))
            .unwrap_or(0);
        let (name, result) = if matching < responses.len() {
            let r = responses.swap_remove(matching);
            (r.name.unwrap_or_default(), r.response.unwrap_or_default())
        } else {
            (String::new(), serde_json::Value::Null)
        };
        let answer = format!("echo: {} [{name}: {result}]", turn.said);
        self.stream_answer(answer, &turn).await
    }

    /// A turn: a function call when the trigger word asks for one, else the echo.
    async fn answer(&mut self, turn: Turn) -> Result<(), Ended> {
        // A new turn makes an unanswered function call moot.
        self.waiting_tool = None;
        let wants_tool = turn.said.to_lowercase().contains(TOOL_TRIGGER);
        if let (true, Some(name)) = (wants_tool, self.function.clone()) {
            self.calls += 1;
            let id = format!("function-call-{}", self.calls);
            let args = json!({ "prompt": turn.said });
            self.send(&ServerMessage::tool_call(id.clone(), name, args))
                .await?;
            self.waiting_tool = Some((id, turn));
            return Ok(());
        }
        let answer = format!("echo: {}", turn.said);
        self.stream_answer(answer, &turn).await
    }

    /// The answer in `modelTurn` pieces, then `generationComplete`, then `turnComplete`
    /// with the turn's usage; the mid-session faults strike after the first piece.
    async fn stream_answer(&mut self, answer: String, turn: &Turn) -> Result<(), Ended> {
        let knobs = self.plan.knobs;
        let mut pieces = Pieces::new(answer, knobs.chunks, knobs.chunk_bytes);
        let mut words = Words::default();
        let mut response_tokens = 0;
        for i in 0..knobs.chunks {
            if i > 0 {
                self.pause().await;
            }
            let piece = pieces.next_piece();
            response_tokens = words.add(&piece);
            self.send(&ServerMessage::model_turn(piece)).await?;
            if i == 0 {
                match self.fault() {
                    Some(LiveFault::CloseMidSession) => {
                        return self.close(Close::new(1011, INTERNAL)).await;
                    }
                    Some(LiveFault::QuotaMidSession) => {
                        let e = quota_error(&self.model);
                        return self.close(Close::for_error(&e)).await;
                    }
                    _ => {}
                }
            }
        }
        self.pause().await;
        self.send(&ServerMessage::generation_complete()).await?;
        self.pause().await;
        let end = ServerMessage::turn_complete(turn.prompt_tokens, response_tokens, turn.modality);
        self.send(&end).await
    }

    async fn pause(&self) {
        if !self.plan.knobs.delay.is_zero() {
            sleep(self.plan.knobs.delay).await;
        }
    }

    async fn send(&mut self, message: &ServerMessage) -> Result<(), Ended> {
        let session = self.session.as_mut().ok_or(Ended)?;
        let bytes = message.to_bytes();
        let sent = if self.plan.knobs.binary {
            session.binary(bytes).await
        } else {
            let text = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            session.text(text).await
        };
        sent.map_err(|_| Ended)
    }

    /// Sends the close frame and ends the conversation.
    async fn close(&mut self, close: Close) -> Result<(), Ended> {
        let session = self.session.take().ok_or(Ended)?;
        let reason = CloseReason {
            code: CloseCode::from(close.code),
            description: Some(close.reason.clone()),
        };
        if session.close(Some(reason)).await.is_ok() {
            self.record.mock_close(close.code, &close.reason);
        }
        Err(Ended)
    }
}

/// The quota error a Live session meets; only its message reaches the client.
fn quota_error(model: &str) -> ApiError {
    ApiError::quota(
        crate::errors::QuotaWindow::InputTokensPerMinute,
        model,
        None,
    )
}
