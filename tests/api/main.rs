//! Integration tests: the real service on a loopback port, a mock Gemini behind it.
//! One binary for all of them (faster to build and link than one per file).

mod helpers;
mod proxy;
