//! How many admissions one key-registry actor answers per second.
//!
//!     cargo run --release --example registry_throughput
//!
//! The registry runs on its own arbiter (thread), as in the service, with 100
//! clients; the main thread keeps `IN_FLIGHT` `Admit` messages outstanding, as
//! HTTP workers do, for `MESSAGES` messages in all. Keys cycle over known
//! clients (with buckets too large to run dry) and some unknown keys.
// A measurement script: a failure ends it with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix::prelude::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use gemini_proxy::keys::{Admit, ClientPolicy, KeyHash, KeyRegistry, Limits};
use std::num::NonZeroU32;
use std::time::Instant;

const CLIENTS: usize = 100;
const MESSAGES: usize = 1_000_000;
const IN_FLIGHT: usize = 64;

fn main() -> std::io::Result<()> {
    actix_rt::System::new().block_on(async {
        let clients: Vec<ClientPolicy> = (0..CLIENTS)
            .map(|i| ClientPolicy {
                name: format!("client-{i}").into(),
                key_hash: KeyHash::of(&format!("key-{i}")),
                limits: Limits {
                    requests_per_minute: NonZeroU32::MAX,
                    burst: NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MAX),
                },
                models: None,
                allow_own_key: true,
                quotas: Default::default(),
            })
            .collect();
        let arbiter = Arbiter::new().handle();
        let registry = KeyRegistry::start_in_arbiter(&arbiter, move |_| {
            KeyRegistry::new(clients, governor::clock::DefaultClock::default())
        });
        // Hashing is the handlers' work, not the actor's: done up front.
        let keys: Vec<KeyHash> = (0..CLIENTS + 10).map(|i| KeyHash::of(&format!("key-{i}"))).collect();

        let started = Instant::now();
        let mut pending = FuturesUnordered::new();
        let (mut sent, mut admitted) = (0usize, 0usize);
        while sent < MESSAGES || !pending.is_empty() {
            while sent < MESSAGES && pending.len() < IN_FLIGHT {
                pending.push(registry.send(Admit {
                    key_hash: keys[sent % keys.len()],
                    name: None,
                    counts: true,
                }));
                sent += 1;
            }
            if let Some(Ok(Ok(_))) = pending.next().await {
                admitted += 1;
            }
        }
        let elapsed = started.elapsed();
        println!(
            "{MESSAGES} admissions ({admitted} admitted, the rest unknown keys) in {:.2} s: {:.0} per second, {:.2} µs each",
            elapsed.as_secs_f64(),
            MESSAGES as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / MESSAGES as f64
        );
        arbiter.stop();
    });
    Ok(())
}
