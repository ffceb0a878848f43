//! Self-test of the offline Gemini mock, over real HTTP: the proxy's own tests trust the
//! mock to behave like upstream, so each route and scenario is pinned here first.
//!
//! A separate test binary from `tests/api`, so the mock can be checked on its own; its
//! modules live in `tests/mock_selftest/` (a crate root has to name their paths).

#[path = "mock_selftest/big_streams.rs"]
mod big_streams;
#[path = "mock_selftest/helpers.rs"]
mod helpers;
#[path = "mock_selftest/native.rs"]
mod native;
#[path = "mock_selftest/not_http.rs"]
mod not_http;
#[path = "mock_selftest/permissions.rs"]
mod permissions;
#[path = "mock_selftest/quotas.rs"]
mod quotas;
#[path = "mock_selftest/refusals.rs"]
mod refusals;
#[path = "mock_selftest/scenarios.rs"]
mod scenarios;
#[path = "mock_selftest/split_usage.rs"]
mod split_usage;
#[path = "mock_selftest/streams.rs"]
mod streams;
#[path = "mock_selftest/surface.rs"]
mod surface;
#[path = "mock_selftest/transport.rs"]
mod transport;
