//! Bringing refused server keys back: a key Gemini refused at key level
//! (suspended, its project's API disabled, billing off) often recovers when
//! the operator fixes the project. Every interval each refused key is asked a
//! `models.get` by itself — no client request is spent on it — and goes back
//! into rotation when Gemini accepts it.

use super::classify::{self, KeyOwner, KeyVerdict};
use super::pipeline::UpstreamContext;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// One re-check of one key gives up after this.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Error bodies are small; this bounds what a re-check reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Re-checks the pool's refused keys on a timer. Runs on an arbiter of its
/// own, which owns its HTTP client.
pub struct KeyRecheck {
    context: Arc<UpstreamContext>,
    client: awc::Client,
    interval: Duration,
    /// `models/{id}` to ask about: the default model, which any working key can read.
    model_path: String,
}

impl KeyRecheck {
    /// Must run on the actor's own arbiter: awc clients cannot move between threads.
    pub fn new(
        context: Arc<UpstreamContext>,
        interval: Duration,
        connect_timeout: Duration,
        model_resource: &str,
    ) -> Self {
        KeyRecheck {
            context,
            client: super::client::build(connect_timeout),
            interval,
            model_path: format!("/v1beta/{model_resource}"),
        }
    }
}

impl Actor for KeyRecheck {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |_, ctx| ctx.notify(RecheckNow));
    }
}

/// Re-checks every refused key now. Sent by the actor's own timer, and by
/// the application's control handle for operators and tests; answers how many
/// keys came back.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RecheckNow;

impl Handler<RecheckNow> for KeyRecheck {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: RecheckNow, _: &mut Context<Self>) -> Self::Result {
        let context = self.context.clone();
        let client = self.client.clone();
        let url = format!("{}{}", context.base_url, self.model_path);
        Box::pin(async move {
            let mut restored = 0;
            for key in context.keys.refused() {
                let check = client
                    .get(&url)
                    .insert_header(("x-goog-api-key", key.header.clone()))
                    .send();
                let accepted = match tokio::time::timeout(CHECK_TIMEOUT, async {
                    let mut response = check.await.ok()?;
                    let body = response.body().limit(MAX_BODY_BYTES).await.ok()?;
                    Some((response.status().as_u16(), body))
                })
                .await
                {
                    Ok(Some((200, _))) => true,
                    Ok(Some((status, body))) => {
                        let failure = classify::classify_failure(status, &body, KeyOwner::Server);
                        if failure.key != KeyVerdict::Refused {
                            // Neither accepted nor refused (Gemini down, a
                            // quota): no news about the key; ask again next time.
                            log::info!(
                                "re-check of server key #{}: Gemini answered {status}; still out of rotation",
                                key.index
                            );
                        }
                        false
                    }
                    _ => false,
                };
                if accepted {
                    context.keys.restore(key.index);
                    restored += 1;
                }
            }
            restored
        })
    }
}

/// Starts the re-check on an arbiter of its own; returns its address (to ask
/// for a re-check now) and the arbiter (to stop it).
pub fn start(
    context: Arc<UpstreamContext>,
    interval: Duration,
    connect_timeout: Duration,
    model_resource: String,
) -> (Addr<KeyRecheck>, ArbiterHandle) {
    let arbiter = Arbiter::new().handle();
    let addr = KeyRecheck::start_in_arbiter(&arbiter, move |_| {
        KeyRecheck::new(context, interval, connect_timeout, &model_resource)
    });
    (addr, arbiter)
}
