//! What each route answers on success, in two phases: `prepare` parses and validates the
//! request (failing with upstream's error), and `finish` builds the reply once the
//! scenario is known. The split exists because a scenario can be named inside the prompt,
//! so it is only known after the body has been parsed.

use super::bodies::{self, Answer, Shape};
use super::catalogue;
use super::errors::ApiError;
use super::events::{native_stream, openai_stream, Pace};
use super::openai::{self, ChatPrompt, ChatRequest, EmbeddingsRequest};
use super::reply::Reply;
use super::request::{
    count_words, embed, parse_json, BatchEmbedRequest, CountTokensRequest, EmbedRequest,
    GenerateRequest, Prompt,
};
use super::resource_api;
use super::resources;
use super::route::{ModelMethod, Query, Route};
use super::scenario::Scenario;
use super::state::Shared;

/// A validated request, ready to be answered.
pub(crate) enum Prepared {
    Generate {
        model: String,
        prompt: Prompt,
        /// Tokens of the cached content the request builds on.
        cached_tokens: u32,
        /// `None`: unary; `Some(true)`: SSE; `Some(false)`: JSON array.
        stream: Option<bool>,
    },
    Chat(ChatPrompt),
    /// OpenAI embeddings, answered at once but with the model named in the body.
    Embeddings {
        model: String,
        reply: Reply,
    },
    Done(Reply),
}

/// `shared` holds the files and caches a request may name; `project` is the caller's.
pub(crate) fn prepare(
    route: &Route,
    body: &[u8],
    query: &Query,
    shared: &Shared,
    project: &str,
) -> Result<Prepared, ApiError> {
    let sse = query.sse;
    let done = |reply| Ok(Prepared::Done(reply));
    match route {
        Route::Model { id, method, .. } => match method {
            ModelMethod::Generate | ModelMethod::Stream => {
                let req: GenerateRequest = parse_json(body)?;
                req.validate()?;
                let cached_tokens = resources::check(&req.references(), shared, project, id)?;
                Ok(Prepared::Generate {
                    model: id.clone(),
                    prompt: req.prompt(),
                    cached_tokens,
                    stream: (*method == ModelMethod::Stream).then_some(sse),
                })
            }
            ModelMethod::CountTokens => {
                let req: CountTokensRequest = parse_json(body)?;
                let req = req.into_generate()?;
                let cached = resources::check(&req.references(), shared, project, id)?;
                let tokens = req.prompt().tokens + cached;
                done(Reply::json(&bodies::count_tokens(tokens)))
            }
            ModelMethod::Embed => {
                let req: EmbedRequest = parse_json(body)?;
                done(Reply::json(&bodies::embed_one(embed(&req.text()))))
            }
            ModelMethod::BatchEmbed => {
                let req: BatchEmbedRequest = parse_json(body)?;
                let items = req.requests.unwrap_or_default();
                let mismatch = items.iter().filter_map(|r| r.model.as_deref()).any(|m| {
                    openai::bare_model(m) != id.as_str() && m != format!("tunedModels/{id}")
                });
                if mismatch {
                    return Err(ApiError::invalid("Request contains an invalid argument."));
                }
                let vectors = items.iter().map(|r| embed(&r.text())).collect();
                done(Reply::json(&bodies::embed_batch(vectors)))
            }
        },
        Route::ListModels { version } => {
            let page = catalogue::page(
                version,
                query.page_size.as_deref(),
                query.page_token.as_deref(),
            )?;
            done(Reply::json(&page))
        }
        Route::GetModel { id, .. } => done(Reply::json(&catalogue::model(id))),
        Route::OpenAiChat { .. } => {
            let req: ChatRequest = parse_json(body)?;
            let prompt = req.prompt()?;
            known_openai_model(&prompt.model)?;
            Ok(Prepared::Chat(prompt))
        }
        Route::OpenAiEmbeddings { .. } => {
            let req: EmbeddingsRequest = parse_json(body)?;
            let model = req.model()?;
            known_openai_model(&model)?;
            let reply = Reply::compact_json(&req.answer(model.clone())?);
            Ok(Prepared::Embeddings { model, reply })
        }
        Route::OpenAiModels { version } => done(Reply::compact_json(&openai::models(version))),
        Route::OpenAiModel { id, .. } => done(Reply::compact_json(&openai::model(id))),
        Route::Resource { version, kind } => done(resource_api::answer(
            kind, version, body, query, project, shared,
        )?),
    }
}

/// The OpenAI surface lives under v1beta, where the `-latest` aliases exist, whatever
/// version prefix the mock was reached under.
fn known_openai_model(model: &str) -> Result<(), ApiError> {
    if catalogue::is_known("v1beta", model) {
        Ok(())
    } else {
        Err(ApiError::model_not_found(
            &format!("models/{model}"),
            "v1beta",
            "generateContent",
        ))
    }
}

impl Prepared {
    /// The first user text, which may name a scenario with `[mock:<name>]`.
    pub fn prompt_text(&self) -> Option<&str> {
        match self {
            Prepared::Generate { prompt, .. } => prompt.first_user_text.as_deref(),
            Prepared::Chat(c) => c.first_user_text.as_deref(),
            Prepared::Embeddings { .. } | Prepared::Done(_) => None,
        }
    }

    /// The model named in the body (OpenAI routes), which may be `mock-<name>`.
    pub fn body_model(&self) -> Option<&str> {
        match self {
            Prepared::Chat(c) => Some(&c.model),
            Prepared::Embeddings { model, .. } => Some(model),
            _ => None,
        }
    }

    pub fn finish(self, scenario: Option<&Scenario>, pace: Pace) -> Reply {
        match self {
            Prepared::Done(reply) | Prepared::Embeddings { reply, .. } => reply,
            Prepared::Generate {
                model,
                prompt,
                cached_tokens,
                stream,
            } => {
                let id = bodies::response_id();
                let text = format!("echo: {}", prompt.last_user_text);
                let answer = Answer {
                    model,
                    response_id: id,
                    prompt_tokens: prompt.tokens + cached_tokens,
                    cached_tokens,
                    shape: Shape::of(scenario),
                };
                match stream {
                    None => {
                        let words = count_words(&text);
                        Reply::json(&answer.response(&text, words, true, true))
                    }
                    Some(sse) => native_stream(answer, text, sse, scenario, pace),
                }
            }
            Prepared::Chat(chat) => {
                let id = format!("chatcmpl-{}", bodies::response_id());
                let text = format!("echo: {}", chat.last_user_text);
                if chat.stream {
                    openai_stream(id, chat, text, scenario, pace)
                } else {
                    Reply::compact_json(&openai::completion(&id, &chat.model, &text, chat.tokens))
                }
            }
        }
    }
}
