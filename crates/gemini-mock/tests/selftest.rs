//! Self-test of the offline Gemini mock, over real HTTP: the proxy's own tests trust the
//! mock to behave like upstream, so each route and scenario is pinned here first.
//!
//! A separate test binary from `tests/api`, so the mock can be checked on its own; its
//! modules live in `tests/mock_selftest/` (a crate root has to name their paths).
// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "selftest/batches.rs"]
mod batches;
#[path = "selftest/big_streams.rs"]
mod big_streams;
#[path = "selftest/caches.rs"]
mod caches;
#[path = "selftest/files.rs"]
mod files;
#[path = "selftest/helpers.rs"]
mod helpers;
#[path = "selftest/interactions.rs"]
mod interactions;
#[path = "selftest/live.rs"]
mod live;
#[path = "selftest/native.rs"]
mod native;
#[path = "selftest/not_http.rs"]
mod not_http;
#[path = "selftest/permissions.rs"]
mod permissions;
#[path = "selftest/quotas.rs"]
mod quotas;
#[path = "selftest/refusals.rs"]
mod refusals;
#[path = "selftest/scenarios.rs"]
mod scenarios;
#[path = "selftest/split_usage.rs"]
mod split_usage;
#[path = "selftest/streams.rs"]
mod streams;
#[path = "selftest/surface.rs"]
mod surface;
#[path = "selftest/tls.rs"]
mod tls;
#[path = "selftest/transport.rs"]
mod transport;
