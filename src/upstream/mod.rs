//! Everything that talks to Gemini: the actors and their clients, the server key
//! pool, the attempt/retry policy, and the classification of Gemini's answers.

pub mod actor;
pub mod call;
pub mod classify;
pub mod client;
pub mod forward;
pub mod gemini;
pub mod key_pool;
pub mod pool;
pub mod retry_budget;
pub mod stream_check;

pub use call::{CallOutcome, Credential, GenerateCall, UpstreamContext};
pub use pool::UpstreamPool;
