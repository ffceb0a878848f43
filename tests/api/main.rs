//! Integration tests: the real service on a loopback port, a mock Gemini behind it.
//! One binary for all of them (faster to build and link than one per file).
// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod container;
mod egress;
mod errors;
mod h2c;
mod helpers;
mod hostile;
mod keys;
mod lifecycle;
mod live;
mod monitoring;
mod native;
mod operations;
mod pipeline;
mod proxy;
mod quotas;
mod redis;
mod resilience;
pub mod resources;
mod sdk;
mod sdk_resources;
mod secrets;
mod shared_keys;
mod tls;
mod upstream_request;
mod upstream_tls;
