//! Everything that talks to Gemini: the actors and their clients, the server key
//! pool, the one pipeline every call takes, and the classification of Gemini's
//! answers.

pub mod actor;
pub mod classify;
pub mod client;
pub mod day;
pub mod egress;
mod exchange;
pub mod gemini;
pub mod h2pool;
pub mod key_pool;
pub mod leak_guard;
pub mod live;
pub mod pipeline;
pub mod pool;
pub mod recheck;
pub mod relay;
pub mod retry_budget;
pub mod stream_reader;
pub mod upload;
pub mod usage;

pub use pipeline::{
    CallOutcome, Credential, Expect, KeyStyle, Reply, ReplyBody, UpstreamCall, UpstreamContext,
};
pub use pool::{Upstream, UpstreamPool};
