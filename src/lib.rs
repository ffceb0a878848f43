//! gemini-proxy: a gateway in front of Google's Gemini API.
//!
//! Handlers validate requests and hand them to a pool of upstream actors that
//! own the HTTP clients; a key-registry actor decides who may call and how fast.

pub mod app;
pub mod auth;
pub mod errors;
pub mod keys;
pub mod live_sessions;
pub mod metrics;
pub mod middleware;
pub mod model_id;
pub mod ownership;
pub mod proxy_request;
pub mod quota;
pub mod request_log;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;
