//! The Interactions API: `POST /{v}/interactions` answers a model (or an agent) and,
//! unless `store` is false, keeps the interaction in the caller's project, where
//! `previous_interaction_id` continues it and get, cancel and delete find it
//! (docs/gemini-wire.md#interactions).
//!
//! The answer echoes the input and, in a continued conversation, names its turn, so a
//! test can tell a continuation from a fresh start; its input tokens count the whole
//! conversation, as the model reads it all again. A background interaction is in
//! progress until `interaction_delay` has passed; its events are a timeline, so a
//! stream opened (or resumed with `last_event_id`) meanwhile waits for them.

mod body;
mod wire;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::auth::check_quota;
use super::catalogue;
use super::errors::ApiError;
use super::jobs::{
    empty, lock, not_found, opaque_id, query_param, sse_data, timestamp, Call, Jobs, Outcome,
};
use super::reply::{compact, Reply};
use super::request::{count_words, parse_json};
use super::stream::Step;
use body::{text_of, CreateBody};
use wire::{Event, InteractionJson, Payload, StepJson, TextBlock, Usage};

/// Interaction ids are `v1_` and an opaque tail (§7.6 of the shared notes).
const ID_PREFIX: &str = "v1_";
const ID_TAIL: usize = 40;
/// Agents the mock knows: Deep Research, which runs in the background only.
const AGENT_PREFIXES: [&str; 1] = ["deep-research-"];

/// One interaction, as the mock keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Interaction {
    pub id: String,
    pub project: String,
    pub key: String,
    model: Option<String>,
    agent: Option<String>,
    previous: Option<String>,
    stored: bool,
    background: bool,
    deleted: bool,
    created: SystemTime,
    started: Instant,
    /// Until completion: zero unless it runs in the background.
    delay: Duration,
    cancelled: Option<(Instant, SystemTime)>,
    text: String,
    usage: Usage,
    /// 1 for a fresh conversation, one more per continuation.
    turn: u32,
    /// Stream deltas the answer is cut into.
    chunks: usize,
}

/// An interaction as tests see it ([`crate::MockGemini::interactions`],
/// `GET /__mock/jobs`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InteractionRecord {
    pub id: String,
    /// The project of the key that made it.
    pub project: String,
    /// The key that made it.
    pub key: String,
    /// `in_progress`, `completed` or `cancelled`.
    pub status: &'static str,
    pub previous_interaction_id: Option<String>,
    /// False for `store: false`: never found again.
    pub stored: bool,
    pub background: bool,
    pub deleted: bool,
    /// Turns of the conversation up to and including this one.
    pub turn: u32,
    /// `usage.total_tokens` of its answer.
    pub total_tokens: u32,
}

impl Interaction {
    fn status(&self, now: Instant) -> &'static str {
        if self.cancelled.is_some() {
            "cancelled"
        } else if now.saturating_duration_since(self.started) < self.delay {
            "in_progress"
        } else {
            "completed"
        }
    }

    pub fn record(&self) -> InteractionRecord {
        InteractionRecord {
            id: self.id.clone(),
            project: self.project.clone(),
            key: self.key.clone(),
            status: self.status(Instant::now()),
            previous_interaction_id: self.previous.clone(),
            stored: self.stored,
            background: self.background,
            deleted: self.deleted,
            turn: self.turn,
            total_tokens: self.usage.total_tokens,
        }
    }

    fn updated(&self, status: &str) -> SystemTime {
        match (status, self.cancelled) {
            (_, Some((_, at))) => at,
            ("completed", None) => self.created + self.delay,
            _ => self.created,
        }
    }

    /// The object; `full` adds the steps (left out of lifecycle events).
    fn json(&self, status: &'static str, full: bool) -> InteractionJson<'_> {
        let done = status == "completed";
        InteractionJson {
            id: &self.id,
            object: "interaction",
            model: self.model.as_deref(),
            agent: self.agent.as_deref(),
            status,
            created: timestamp(self.created, false),
            updated: timestamp(self.updated(status), false),
            previous_interaction_id: self.previous.as_deref().filter(|_| full),
            steps: (full && done).then(|| {
                vec![StepJson {
                    kind: "model_output",
                    content: Some(vec![TextBlock::text(&self.text)]),
                }]
            }),
            usage: done.then_some(self.usage),
        }
    }

    fn reply(&self) -> Reply {
        Reply::json(&self.json(self.status(Instant::now()), true))
    }

    /// Every event of the interaction's stream with the moment it happens (after the
    /// start), in order; numbered from 1, the number being its `event_id`.
    fn timeline(&self) -> Vec<(Duration, Bytes)> {
        let mut events = Vec::new();
        let mut push = |at: Duration, payload: Payload<'_>, event_type| {
            let event = Event {
                event_type,
                event_id: (events.len() + 1).to_string(),
                payload,
            };
            events.push((at, sse_data(&compact(&event))));
        };
        let created = Payload::Interaction {
            interaction: self.json("in_progress", false),
        };
        push(Duration::ZERO, created, "interaction.created");
        if let Some((at, _)) = self.cancelled {
            let status = Payload::Status {
                interaction_id: &self.id,
                status: "cancelled",
            };
            let when = at.saturating_duration_since(self.started);
            push(when, status, "interaction.status_update");
            return events;
        }
        let end = self.delay;
        let start = Payload::StepStart {
            index: 0,
            step: StepJson {
                kind: "model_output",
                content: None,
            },
        };
        push(end, start, "step.start");
        for piece in pieces(&self.text, self.chunks) {
            let delta = Payload::StepDelta {
                index: 0,
                delta: TextBlock::text(piece),
            };
            push(end, delta, "step.delta");
        }
        push(end, Payload::StepStop { index: 0 }, "step.stop");
        let completed = Payload::Interaction {
            interaction: self.json("completed", false),
        };
        push(end, completed, "interaction.completed");
        events
    }

    /// The stream from after `last_event_id`: each event waits for its moment, and
    /// events produced together are `gap` apart.
    fn stream(&self, last_event_id: Option<&str>, gap: Duration) -> Result<Vec<Step>, ApiError> {
        let skip = match last_event_id.filter(|s| !s.is_empty()) {
            None => 0,
            Some(id) => id
                .parse::<usize>()
                .map_err(|_| ApiError::invalid(format!("Invalid last_event_id: {id}")))?,
        };
        let now = Instant::now();
        let mut cursor = now.saturating_duration_since(self.started);
        let mut steps = Vec::new();
        for (i, (at, frame)) in self.timeline().into_iter().enumerate().skip(skip) {
            let wait = if at > cursor {
                at - cursor
            } else if i > skip {
                gap
            } else {
                Duration::ZERO
            };
            cursor = cursor.max(at);
            steps.push(Step::Wait(wait));
            steps.push(Step::Data(frame));
        }
        Ok(steps)
    }
}

/// `text` cut at spaces into at most `n` pieces of about as many words each; the pieces
/// put together are `text`.
fn pieces(text: &str, n: usize) -> Vec<&str> {
    let words: Vec<usize> = text
        .char_indices()
        .filter(|(_, c)| *c == ' ')
        .map(|(i, _)| i + 1)
        .collect();
    let n = n.clamp(1, words.len() + 1);
    let mut cuts: Vec<usize> = (1..n).map(|k| words[k * words.len() / n]).collect();
    cuts.dedup();
    let mut out = Vec::with_capacity(n);
    let mut from = 0;
    for cut in cuts {
        out.push(&text[from..cut]);
        from = cut;
    }
    out.push(&text[from..]);
    out
}

fn bare_model(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

pub(crate) fn create(call: &Call<'_>, body: &[u8]) -> Result<Outcome, ApiError> {
    let body: CreateBody = parse_json(body)?;
    let background = body.background.unwrap_or(false);
    let stored = body.store.unwrap_or(true);
    match (&body.model, &body.agent) {
        (Some(model), None) => {
            let model = bare_model(model);
            if !catalogue::is_known(call.version, model) {
                return Err(ApiError::model_not_found(
                    &format!("models/{model}"),
                    call.version,
                    "createInteraction",
                ));
            }
            check_quota(call.cfg, &call.key, model)?;
        }
        (None, Some(agent)) => {
            if !AGENT_PREFIXES.iter().any(|p| agent.starts_with(p)) {
                return Err(ApiError::new(
                    404,
                    "NOT_FOUND",
                    format!("Agent {agent} is not found."),
                ));
            }
            if !background {
                return Err(ApiError::invalid(
                    "Agent interactions must be run with background set to true.",
                ));
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "Exactly one of model and agent must be set.",
            ))
        }
    }
    if background && !stored {
        return Err(ApiError::invalid(
            "Background interactions must be stored: store cannot be false.",
        ));
    }
    let input = body.input.as_ref().map(text_of).unwrap_or_default();
    if body.input.is_none() && body.previous_interaction_id.is_none() {
        return Err(ApiError::invalid("input is required."));
    }
    let system = body
        .system_instruction
        .as_ref()
        .map_or(0, |s| count_words(&text_of(s)));
    let mut all = lock(&call.shared.jobs.interactions);
    let (turn, history) = match &body.previous_interaction_id {
        None => (1, 0),
        Some(prev) => {
            let prev = find(&all, call, prev)?;
            if prev.status(Instant::now()) != "completed" {
                return Err(ApiError::new(
                    400,
                    "FAILED_PRECONDITION",
                    "The previous interaction has not completed.",
                ));
            }
            (prev.turn + 1, prev.usage.total_tokens)
        }
    };
    let text = if turn == 1 {
        format!("echo: {input}")
    } else {
        format!("echo: {input} (turn {turn})")
    };
    let input_tokens = history + count_words(&input).max(1) + system;
    let interaction = Interaction {
        id: format!("{ID_PREFIX}{}", opaque_id(ID_TAIL)),
        project: call.project.clone(),
        key: call.key.clone(),
        model: body.model.as_deref().map(|m| bare_model(m).to_owned()),
        agent: body.agent.clone(),
        previous: body.previous_interaction_id.clone(),
        stored,
        background,
        deleted: false,
        created: SystemTime::now(),
        started: Instant::now(),
        delay: if background {
            call.cfg.interaction_delay
        } else {
            Duration::ZERO
        },
        cancelled: None,
        usage: Usage::new(input_tokens, count_words(&text)),
        text,
        turn,
        chunks: call.knobs.pace.chunks,
    };
    let answer = if body.stream == Some(true) {
        Outcome::Timed(interaction.stream(None, call.knobs.pace.gap)?)
    } else {
        Outcome::Reply(interaction.reply())
    };
    all.push(interaction);
    Ok(answer)
}

/// The caller's stored interaction `id`, or NOT_FOUND.
fn find<'a>(
    all: &'a [Interaction],
    call: &Call<'_>,
    id: &str,
) -> Result<&'a Interaction, ApiError> {
    all.iter()
        .find(|i| i.id == id && visible(i, call))
        .ok_or_else(not_found)
}

fn visible(i: &Interaction, call: &Call<'_>) -> bool {
    i.stored && !i.deleted && i.project == call.project
}

/// `GET /{v}/interactions/{id}`: the object, or with `stream=true` its events from
/// after `last_event_id`.
pub(crate) fn get(call: &Call<'_>, id: &str) -> Result<Outcome, ApiError> {
    let all = lock(&call.shared.jobs.interactions);
    let interaction = find(&all, call, id)?;
    let stream = query_param(call.query, "stream").is_some_and(|s| s == "true");
    let last = query_param(call.query, "last_event_id");
    if stream {
        let steps = interaction.stream(last.as_deref(), call.knobs.pace.gap)?;
        Ok(Outcome::Timed(steps))
    } else {
        Ok(Outcome::Reply(interaction.reply()))
    }
}

/// Only a background interaction still in progress can be cancelled.
pub(crate) fn cancel(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    let mut all = lock(&call.shared.jobs.interactions);
    let interaction = all
        .iter_mut()
        .find(|i| i.id == id && visible(i, call))
        .ok_or_else(not_found)?;
    if !interaction.background || interaction.status(Instant::now()) != "in_progress" {
        return Err(ApiError::new(
            400,
            "FAILED_PRECONDITION",
            "Only background interactions that are in progress can be cancelled.",
        ));
    }
    interaction.cancelled = Some((Instant::now(), SystemTime::now()));
    Ok(interaction.reply())
}

pub(crate) fn delete(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    let mut all = lock(&call.shared.jobs.interactions);
    let interaction = all
        .iter_mut()
        .find(|i| i.id == id && visible(i, call))
        .ok_or_else(not_found)?;
    interaction.deleted = true;
    Ok(empty())
}

/// Every interaction made since the mock started, for tests.
pub(crate) fn records(jobs: &Jobs) -> Vec<InteractionRecord> {
    lock(&jobs.interactions)
        .iter()
        .map(Interaction::record)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_at_spaces_and_rejoin() {
        let text = "echo: one two three four";
        for n in 1..8 {
            let p = pieces(text, n);
            assert_eq!(p.concat(), text, "{n}");
            assert!(p.len() <= n.max(1), "{n}: {p:?}");
        }
        assert_eq!(pieces("one", 3), vec!["one"]);
        assert_eq!(pieces("", 3), vec![""]);
        assert_eq!(pieces("a b c", 3), vec!["a ", "b ", "c"]);
    }
}
