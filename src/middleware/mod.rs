//! Middleware the service wraps around every route.

pub mod method;
pub mod observe;
pub mod panics;
