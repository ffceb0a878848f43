//! Asking a server key by itself what Gemini thinks of it: a `models.get` with
//! that key alone, no client request spent on it.
//!
//! - A key Gemini refused at key level (suspended, its project's API
//!   disabled, billing off) often recovers when the operator fixes the
//!   project: every interval each refused key is asked, and goes back into
//!   rotation when Gemini accepts it.
//! - A key that got a 403 without a key-level reason (usually about the
//!   request: another project's file; but Gemini also refuses a key reported
//!   as leaked that way) is asked at once: refused only if it is refused by
//!   itself too, so no client can take a key out by naming someone's file.

use super::classify::{self, KeyOwner, KeyVerdict};
use super::client::UpstreamConnect;
use super::egress::Clients;
use super::pipeline::UpstreamContext;
use actix::prelude::*;
use std::rc::Rc;
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
    /// One per egress proxy: a key is asked through its own proxy.
    clients: Clients,
    interval: Duration,
    /// The `models.get` of the default model, which any working key can read.
    url: Rc<str>,
}

impl KeyRecheck {
    /// Must run on the actor's own arbiter: awc clients cannot move between threads.
    pub fn new(
        context: Arc<UpstreamContext>,
        interval: Duration,
        connect: &UpstreamConnect,
        model_resource: &str,
    ) -> Self {
        KeyRecheck {
            clients: Clients::build(&context.egress, |proxy| {
                super::client::build(connect, proxy)
            }),
            interval,
            url: format!("{}/v1beta/{model_resource}", context.base_url).into(),
            context,
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
        let clients = self.clients.clone();
        let url = self.url.clone();
        Box::pin(async move {
            let mut restored = 0;
            for key in context.keys.refused() {
                let client = clients.route(context.egress.route_of_server_key(key.index));
                match check(client, &url, &key.header).await {
                    Check::Accepted => {
                        context.keys.restore(key.index);
                        restored += 1;
                    }
                    Check::Refused => {}
                    Check::NoNews(status) => log::info!(
                        "re-check of server key #{}: no verdict ({status}); still out of rotation",
                        key.index
                    ),
                }
            }
            restored
        })
    }
}

/// Asks key `0` (its index) by itself after a suspect answer; sent by the
/// key pool's prober.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeKey(pub usize);

impl Handler<ProbeKey> for KeyRecheck {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, ProbeKey(index): ProbeKey, _: &mut Context<Self>) -> Self::Result {
        let context = self.context.clone();
        let clients = self.clients.clone();
        let url = self.url.clone();
        Box::pin(async move {
            let Some(header) = context.keys.header(index) else {
                return;
            };
            let client = clients.route(context.egress.route_of_server_key(index));
            match check(client, &url, &header).await {
                Check::Refused => {
                    log::warn!("server key #{index} is refused by itself too (a probe after a 403 without a reason)");
                    context.keys.refuse(index);
                }
                Check::Accepted => {
                    log::debug!("server key #{index} is fine: the 403 was about the request")
                }
                Check::NoNews(status) => {
                    log::info!("probe of server key #{index}: no verdict ({status})")
                }
            }
        })
    }
}

/// What Gemini says about a key asked by itself.
enum Check {
    Accepted,
    Refused,
    /// Neither (Gemini down, a quota, no answer): ask again later.
    NoNews(String),
}

async fn check(client: &awc::Client, url: &str, key: &awc::http::header::HeaderValue) -> Check {
    let request = client
        .get(url)
        .insert_header(("x-goog-api-key", key.clone()))
        .send();
    let answer = tokio::time::timeout(CHECK_TIMEOUT, async {
        let mut response = request.await.map_err(|e| e.to_string())?;
        let body = response
            .body()
            .limit(MAX_BODY_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((response.status().as_u16(), body))
    })
    .await;
    match answer {
        Ok(Ok((200, _))) => Check::Accepted,
        Ok(Ok((status, body))) => {
            match classify::classify_failure(status, &body, KeyOwner::Server).key {
                // The key alone was asked: a 403 of any kind is about the key.
                KeyVerdict::Refused | KeyVerdict::Suspect => Check::Refused,
                _ => Check::NoNews(format!("status {status}")),
            }
        }
        Ok(Err(error)) => Check::NoNews(error),
        Err(_) => Check::NoNews("no answer in time".into()),
    }
}

/// Starts the re-check on an arbiter of its own, connected to the key pool's
/// probes; returns its address (to ask for a re-check now) and the arbiter
/// (to stop it).
pub fn start(
    context: Arc<UpstreamContext>,
    interval: Duration,
    connect: UpstreamConnect,
    model_resource: String,
) -> (Addr<KeyRecheck>, ArbiterHandle) {
    let (probes, mut asked) = tokio::sync::mpsc::unbounded_channel::<usize>();
    context.keys.connect_prober(probes);
    let arbiter = Arbiter::new().handle();
    let addr = KeyRecheck::start_in_arbiter(&arbiter, move |ctx| {
        let own = ctx.address();
        // On this arbiter, with the actor: ends when the arbiter stops.
        actix_rt::spawn(async move {
            while let Some(index) = asked.recv().await {
                own.do_send(ProbeKey(index));
            }
        });
        KeyRecheck::new(context, interval, &connect, &model_resource)
    });
    (addr, arbiter)
}
