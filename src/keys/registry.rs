//! The key-registry actor: who a client key belongs to, and whether that client
//! may send one more request now.
//!
//! It owns the clients and their token buckets. Handlers send it the SHA-256 of
//! the key they received (the key itself never leaves the handler), so one actor
//! serves every worker without doing the hashing for them. Only known clients
//! have a bucket, so unknown keys cost nothing to remember.
//!
//! With the Redis backend the bucket that counts is the client's shared one in
//! Redis, and the in-process bucket is the fallback while Redis is down. The
//! key lookup stays synchronous either way; only the Redis check is a future,
//! so [`Admit`] answers with [`actix::Response`]: a plain value (no allocation)
//! for the memory backend, unknown keys and a Redis known to be down, a boxed
//! future only when Redis is asked. `ResponseFuture` would box every request,
//! and `ResponseActFuture` would add nothing, as the future needs no actor
//! state once it has the client's limiter.

use super::limiter::{ClientLimiter, Decision, RateLimitSnapshot};
use super::policy::{ClientPolicy, KeyHash};
use super::quota_gate::{forget_remaining, QuotaContext, QuotaGate};
use super::redis_health::{RedisHealth, PROBE_INTERVAL};
use super::redis_limiter::{bucket_key, RedisLimiter};
use super::redis_quota::SharedQuotas;
use crate::quota::usage::ScopedUsage;
use crate::quota::{ClientUsage, QuotaRefusal};
use actix::prelude::*;
use actix_web::http::header::HeaderValue;
use governor::clock::{Clock, DefaultClock};
use std::sync::{Arc, RwLock};

/// Asks: may the holder of this key send a request now? Takes one token when the
/// key is known. Sent by every authenticated route before it reads the body.
#[derive(Message)]
#[rtype(result = "Result<Admission, Refusal>")]
pub struct Admit {
    pub key_hash: KeyHash,
    /// Admits the client of this name instead, whatever `key_hash` says: a
    /// request that carries no key but a token only that client was given
    /// (a chunk of its upload, authorised by the upload id).
    pub name: Option<Arc<str>>,
    /// Counts against the client's quotas (a call that may reach Gemini);
    /// false for `/usage`, which takes a request token only.
    pub counts: bool,
}

/// The key is known and a token was taken.
#[derive(Clone, Debug)]
pub struct Admission {
    pub client: Arc<ClientPolicy>,
    pub rate: RateLimitSnapshot,
    /// The quota windows of the model stage and the charge at the end.
    pub quota: QuotaGate,
    /// The `RateLimit-Policy` header of the client's limits.
    pub policy_header: HeaderValue,
}

/// Why a request may not go on.
#[derive(Clone, Debug)]
pub enum Refusal {
    /// No client has this key.
    UnknownKey,
    /// The client's bucket is empty.
    Limited {
        client: Arc<ClientPolicy>,
        rate: RateLimitSnapshot,
        retry_after_secs: u64,
        policy_header: HeaderValue,
    },
    /// One of the client's own quota windows is closed.
    Quota {
        client: Arc<ClientPolicy>,
        rate: RateLimitSnapshot,
        refusal: QuotaRefusal,
        policy_header: HeaderValue,
    },
}

/// Replaces the set of clients (start-up and reload). A client whose name and
/// limits are unchanged keeps its bucket; a removed client is gone at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplaceClients {
    pub clients: Vec<ClientPolicy>,
}

/// Asks for a client's limits and what it used of each (`GET /usage`); takes nothing.
#[derive(Message)]
#[rtype(result = "Option<UsageReport>")]
pub struct ReadUsage {
    pub key_hash: KeyHash,
}

/// A client's limits and usage.
pub struct UsageReport {
    pub client: Arc<ClientPolicy>,
    pub bucket: RateLimitSnapshot,
    pub windows: Vec<ScopedUsage>,
    pub now: jiff::Timestamp,
}

/// Asks how many buckets exist (one per configured client), to show that
/// unknown keys never create state.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct BucketCount;

pub(super) struct Entry<C: Clock + Clone> {
    policy: Arc<ClientPolicy>,
    /// Shared with a pending Redis check, which falls back to it.
    limiter: Arc<ClientLimiter<C>>,
    /// The client's bucket in Redis (used only with that backend).
    shared_key: Arc<str>,
    /// The client's in-process quota windows (clients with quotas only).
    usage: Option<Arc<ClientUsage>>,
    policy_header: HeaderValue,
}

/// The Redis backend: the client, and whether it answers.
impl<C: Clock + Clone> Clone for Entry<C> {
    fn clone(&self) -> Self {
        Entry {
            policy: self.policy.clone(),
            limiter: self.limiter.clone(),
            shared_key: self.shared_key.clone(),
            usage: self.usage.clone(),
            policy_header: self.policy_header.clone(),
        }
    }
}

/// The clients as the registry last set them, published for the per-worker
/// registries ([`super::worker`]) so they check the same buckets without
/// a message to this actor's thread.
pub struct ClientTable<C: Clock + Clone> {
    clients: RwLock<Arc<Vec<Entry<C>>>>,
    quota: Option<Arc<QuotaContext>>,
}

impl<C: Clock + Clone> ClientTable<C> {
    pub fn new(quota: Option<Arc<QuotaContext>>) -> Self {
        ClientTable {
            clients: RwLock::new(Arc::new(Vec::new())),
            quota,
        }
    }

    fn publish(&self, clients: &[Entry<C>]) {
        if let Ok(mut slot) = self.clients.write() {
            *slot = Arc::new(clients.to_vec());
        }
    }

    /// As [`KeyRegistry::admit`], on the published clients.
    pub fn admit(&self, msg: &Admit) -> Result<Admission, Refusal> {
        let clients = self.clients.read().map(|c| c.clone()).unwrap_or_default();
        admit_in(&clients, msg, self.quota.as_ref())
    }
}

/// Finds the client with this key, looking at every entry whatever matches,
/// so the time taken does not depend on which client (if any) holds it.
fn find_in<'a, C: Clock + Clone>(
    clients: &'a [Entry<C>],
    key_hash: &KeyHash,
) -> Option<&'a Entry<C>> {
    let mut found = None;
    for entry in clients {
        if entry.policy.key_hash.ct_eq(key_hash) {
            found = Some(entry);
        }
    }
    found
}

/// The client a message names: by name when it gives one, else by key.
fn find_for<'a, C: Clock + Clone>(clients: &'a [Entry<C>], msg: &Admit) -> Option<&'a Entry<C>> {
    match &msg.name {
        Some(name) => clients.iter().find(|entry| *entry.policy.name == **name),
        None => find_in(clients, &msg.key_hash),
    }
}

fn admit_in<C: Clock + Clone>(
    clients: &[Entry<C>],
    msg: &Admit,
    quota: Option<&Arc<QuotaContext>>,
) -> Result<Admission, Refusal> {
    let entry = find_for(clients, msg).ok_or(Refusal::UnknownKey)?;
    local_outcome(entry, entry.limiter.take(), msg.counts, quota)
}

/// The outcome of a bucket decision made in process, with the client's
/// in-process quota windows.
fn local_outcome<C: Clock + Clone>(
    entry: &Entry<C>,
    decision: Decision,
    counts: bool,
    quota: Option<&Arc<QuotaContext>>,
) -> Result<Admission, Refusal> {
    let gate = match (&entry.usage, quota) {
        (Some(usage), Some(context)) if counts && matches!(decision, Decision::Allowed(_)) => {
            if let Err(refusal) = context.admit_total(&entry.policy, usage) {
                return Err(quota_refusal(entry, decision, refusal));
            }
            QuotaGate::Local {
                usage: usage.clone(),
                context: context.clone(),
            }
        }
        _ => QuotaGate::Open,
    };
    outcome(entry, decision, gate)
}

fn quota_refusal<C: Clock + Clone>(
    entry: &Entry<C>,
    decision: Decision,
    refusal: QuotaRefusal,
) -> Refusal {
    let rate = match decision {
        Decision::Allowed(rate) => rate,
        Decision::Limited { snapshot, .. } => snapshot,
    };
    Refusal::Quota {
        client: entry.policy.clone(),
        rate,
        refusal,
        policy_header: entry.policy_header.clone(),
    }
}

struct SharedLimits {
    limiter: RedisLimiter,
    /// The quota windows, on the same connection (present with a quota context).
    quotas: Option<Arc<SharedQuotas>>,
    health: Arc<RedisHealth>,
    /// A probe is under way; the next waits for it rather than piling up.
    probing: bool,
}

pub struct KeyRegistry<C: Clock + Clone = DefaultClock> {
    clients: Vec<Entry<C>>,
    clock: C,
    shared: Option<SharedLimits>,
    /// Where the clients are published for per-worker registries, if any.
    table: Option<Arc<ClientTable<C>>>,
    /// The in-process quota windows; `None` only where no client has quotas
    /// that matter (benchmarks of the bucket alone).
    quota: Option<Arc<QuotaContext>>,
}

impl<C: Clock + Clone> KeyRegistry<C> {
    pub fn new(clients: Vec<ClientPolicy>, clock: C) -> Self {
        let mut registry = KeyRegistry {
            clients: Vec::new(),
            clock,
            shared: None,
            table: None,
            quota: None,
        };
        registry.replace(clients);
        registry
    }

    /// Keeps quota windows, in process (and in Redis once [`Self::with_redis`]).
    pub fn with_quotas(mut self, context: Arc<QuotaContext>) -> Self {
        self.quota = Some(context);
        let clients = self.clients.iter().map(|e| (*e.policy).clone()).collect();
        self.replace(clients);
        self
    }

    /// The in-process quota windows, for the state file.
    pub fn quota_context(&self) -> Option<Arc<QuotaContext>> {
        self.quota.clone()
    }

    /// Publishes the clients to `table` now and after every replacement.
    pub fn publishing_to(mut self, table: Arc<ClientTable<C>>) -> Self {
        table.publish(&self.clients);
        self.table = Some(table);
        self
    }

    /// Keeps the limits in Redis, shared with the other replicas; the
    /// in-process buckets become the fallback.
    pub fn with_redis(mut self, limiter: RedisLimiter, health: RedisHealth) -> Self {
        let quotas = self
            .quota
            .as_ref()
            .map(|context| Arc::new(limiter.quotas(context.clone())));
        self.shared = Some(SharedLimits {
            quotas,
            limiter,
            health: Arc::new(health),
            probing: false,
        });
        self
    }

    fn replace(&mut self, clients: Vec<ClientPolicy>) {
        let mut old: Vec<Entry<C>> = std::mem::take(&mut self.clients);
        if let Some(context) = &self.quota {
            // Gauges of limits that may be gone; the new ones are set below.
            for entry in &old {
                forget_remaining(&context.metrics, &entry.policy);
            }
            let names: Vec<Arc<str>> = clients
                .iter()
                .filter(|c| !c.quotas.is_empty())
                .map(|c| c.name.clone())
                .collect();
            context.store.retain(&names);
        }
        self.clients = clients
            .into_iter()
            .map(|policy| {
                let kept = old.iter().position(|e| {
                    e.policy.name == policy.name && e.limiter.limits() == policy.limits
                });
                let limiter = match kept {
                    Some(index) => old.swap_remove(index).limiter,
                    None => Arc::new(ClientLimiter::new(policy.limits, self.clock.clone())),
                };
                // Kept by name whatever the limits: a change keeps today's usage.
                let usage = self.quota.as_ref().and_then(|q| q.usage_of(&policy));
                if let (Some(context), Some(usage)) = (&self.quota, &usage) {
                    context.changed(&policy, usage);
                }
                Entry {
                    shared_key: bucket_key(&policy.name, policy.limits).into(),
                    policy_header: policy_header(&policy),
                    policy: Arc::new(policy),
                    limiter,
                    usage,
                }
            })
            .collect();
        if let Some(table) = &self.table {
            table.publish(&self.clients);
        }
        if let Some(context) = &self.quota {
            let with_quotas = self
                .clients
                .iter()
                .filter_map(|e| e.usage.clone().map(|u| (e.policy.clone(), u)))
                .collect();
            if let Ok(mut slot) = context.clients.write() {
                *slot = with_quotas;
            }
        }
    }

    fn find(&self, key_hash: &KeyHash) -> Option<&Entry<C>> {
        find_in(&self.clients, key_hash)
    }

    /// Admits or refuses by the in-process bucket and windows alone.
    pub fn admit(&self, key_hash: &KeyHash) -> Result<Admission, Refusal> {
        let msg = Admit {
            key_hash: *key_hash,
            name: None,
            counts: true,
        };
        admit_in(&self.clients, &msg, self.quota.as_ref())
    }
}

/// The `RateLimit-Policy` header: the bucket as `rpm`, then every quota.
fn policy_header(policy: &ClientPolicy) -> HeaderValue {
    let mut value = format!("\"rpm\";q={};w=60", policy.limits.requests_per_minute);
    policy.quotas.policy_items(&mut value);
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("\"rpm\""))
}

fn outcome<C: Clock + Clone>(
    entry: &Entry<C>,
    decision: Decision,
    quota: QuotaGate,
) -> Result<Admission, Refusal> {
    let client = entry.policy.clone();
    match decision {
        Decision::Allowed(rate) => Ok(Admission {
            client,
            rate,
            quota,
            policy_header: entry.policy_header.clone(),
        }),
        Decision::Limited {
            snapshot,
            retry_after_secs,
        } => Err(Refusal::Limited {
            client,
            rate: snapshot,
            retry_after_secs,
            policy_header: entry.policy_header.clone(),
        }),
    }
}

impl<C: Clock + Clone + Unpin + 'static> KeyRegistry<C>
where
    C::Instant: Unpin,
{
    /// Asks Redis whether it answers, unless a probe is already under way.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.as_mut().filter(|s| !s.probing) else {
            return;
        };
        shared.probing = true;
        let health = shared.health.clone();
        let probe = shared.limiter.probe();
        let probe = async move {
            match probe.await {
                Ok(()) => health.up(),
                Err(why) => health.down(&why),
            }
        };
        ctx.spawn(probe.into_actor(self).map(|(), registry, _| {
            if let Some(shared) = registry.shared.as_mut() {
                shared.probing = false;
            }
        }));
    }
}

impl<C: Clock + Clone + Unpin + 'static> Actor for KeyRegistry<C>
where
    C::Instant: Unpin,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.shared.is_some() {
            // At once, so the gauge and the log say where Redis stands from
            // start-up, then regularly, to notice it leave and come back.
            self.probe(ctx);
            ctx.run_interval(PROBE_INTERVAL, |registry, ctx| registry.probe(ctx));
        }
    }
}

impl<C: Clock + Clone + Unpin + 'static> Handler<Admit> for KeyRegistry<C>
where
    C::Instant: Unpin,
{
    type Result = Response<Result<Admission, Refusal>>;

    fn handle(&mut self, msg: Admit, _: &mut Context<Self>) -> Self::Result {
        let shared = match &self.shared {
            Some(shared) if shared.health.worth_asking() => shared,
            // The memory backend, or Redis known to be down: no waiting.
            _ => return Response::reply(admit_in(&self.clients, &msg, self.quota.as_ref())),
        };
        let Some(entry) = find_for(&self.clients, &msg) else {
            return Response::reply(Err(Refusal::UnknownKey));
        };
        let entry = entry.clone();
        let health = shared.health.clone();
        let quota = self.quota.clone();
        match (&shared.quotas, &entry.usage) {
            (Some(quotas), Some(_)) if msg.counts => {
                let quotas = quotas.clone();
                Response::fut(async move {
                    let admission = quotas
                        .admit(
                            entry.policy.clone(),
                            entry.shared_key.clone(),
                            entry.usage.clone(),
                        )
                        .await;
                    match admission {
                        Ok(shared) => match shared.refusal {
                            Some(refusal) => Err(quota_refusal(&entry, shared.decision, refusal)),
                            None => {
                                outcome(&entry, shared.decision, QuotaGate::Shared(shared.gate))
                            }
                        },
                        Err(why) => {
                            health.down(&why);
                            local_outcome(&entry, entry.limiter.take(), true, quota.as_ref())
                        }
                    }
                })
            }
            _ => {
                let check = shared
                    .limiter
                    .check(entry.shared_key.clone(), entry.policy.limits);
                let counts = msg.counts;
                Response::fut(async move {
                    let decision = match check.await {
                        Ok(decision) => decision,
                        Err(why) => {
                            health.down(&why);
                            entry.limiter.take()
                        }
                    };
                    local_outcome(&entry, decision, counts, quota.as_ref())
                })
            }
        }
    }
}

impl<C: Clock + Clone + Unpin + 'static> Handler<ReplaceClients> for KeyRegistry<C>
where
    C::Instant: Unpin,
{
    type Result = ();

    fn handle(&mut self, msg: ReplaceClients, _: &mut Context<Self>) {
        self.replace(msg.clients);
    }
}

impl<C: Clock + Clone + Unpin + 'static> Handler<ReadUsage> for KeyRegistry<C>
where
    C::Instant: Unpin,
{
    type Result = Response<Option<UsageReport>>;

    fn handle(&mut self, msg: ReadUsage, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.find(&msg.key_hash).cloned() else {
            return Response::reply(None);
        };
        let quota = self.quota.clone();
        let local = move |entry: &Entry<C>| {
            let now = quota
                .as_ref()
                .map_or_else(jiff::Timestamp::now, |q| q.clock.now());
            let windows = match (&entry.usage, &quota) {
                (Some(usage), Some(q)) => usage.usage(&entry.policy.quotas, now, &q.days),
                _ => Vec::new(),
            };
            UsageReport {
                client: entry.policy.clone(),
                bucket: entry.limiter.peek(),
                windows,
                now,
            }
        };
        let shared = match &self.shared {
            Some(shared) if shared.health.worth_asking() => shared,
            _ => return Response::reply(Some(local(&entry))),
        };
        let Some(quotas) = shared.quotas.clone() else {
            return Response::reply(Some(local(&entry)));
        };
        let health = shared.health.clone();
        Response::fut(async move {
            match quotas.read(&entry.policy, &entry.shared_key).await {
                Ok((tat, windows)) => {
                    let now = quotas.context.clock.now();
                    Some(UsageReport {
                        bucket: bucket_from_tat(entry.policy.limits, tat, now),
                        client: entry.policy.clone(),
                        windows,
                        now,
                    })
                }
                Err(why) => {
                    health.down(&why);
                    Some(local(&entry))
                }
            }
        })
    }
}

/// The bucket as Redis holds it: its theoretical arrival time (the moment it
/// is full again), or none for a full bucket.
fn bucket_from_tat(
    limits: super::policy::Limits,
    tat: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> RateLimitSnapshot {
    let until_full = tat.map_or(std::time::Duration::ZERO, |tat| {
        crate::quota::clock::until(now, tat)
    });
    RateLimitSnapshot::of_bucket(limits, until_full)
}

impl<C: Clock + Clone + Unpin + 'static> Handler<BucketCount> for KeyRegistry<C>
where
    C::Instant: Unpin,
{
    type Result = usize;

    fn handle(&mut self, _: BucketCount, _: &mut Context<Self>) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::policy::Limits;
    use governor::clock::FakeRelativeClock;
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn client(name: &str, key: &str, burst: u32) -> ClientPolicy {
        ClientPolicy {
            name: name.into(),
            key_hash: KeyHash::of(key),
            limits: Limits {
                requests_per_minute: NonZeroU32::new(60).unwrap(),
                burst: NonZeroU32::new(burst).unwrap(),
            },
            models: None,
            allow_own_key: true,
            quotas: Default::default(),
        }
    }

    fn drain(registry: &KeyRegistry<FakeRelativeClock>, key: &str) -> usize {
        (0..100)
            .take_while(|_| registry.admit(&KeyHash::of(key)).is_ok())
            .count()
    }

    #[test]
    fn finds_the_client_that_holds_a_key() {
        let registry = KeyRegistry::new(
            vec![client("a", "key-a", 5), client("b", "key-b", 5)],
            FakeRelativeClock::default(),
        );
        let admission = registry.admit(&KeyHash::of("key-b")).unwrap();
        assert_eq!(&*admission.client.name, "b");
        assert!(matches!(
            registry.admit(&KeyHash::of("key-c")),
            Err(Refusal::UnknownKey)
        ));
    }

    #[test]
    fn one_client_running_dry_leaves_another_untouched() {
        let registry = KeyRegistry::new(
            vec![client("a", "key-a", 2), client("b", "key-b", 2)],
            FakeRelativeClock::default(),
        );
        assert_eq!(drain(&registry, "key-a"), 2);
        assert_eq!(drain(&registry, "key-b"), 2);
    }

    #[test]
    fn a_reload_keeps_the_bucket_of_an_unchanged_client_only() {
        let clock = FakeRelativeClock::default();
        let mut registry = KeyRegistry::new(
            vec![client("a", "key-a", 2), client("b", "key-b", 2)],
            clock.clone(),
        );
        assert_eq!(drain(&registry, "key-a"), 2);
        assert_eq!(drain(&registry, "key-b"), 2);
        registry.replace(vec![
            client("a", "key-a", 2),
            client("b", "key-b", 3),
            client("c", "key-c", 1),
        ]);
        assert_eq!(drain(&registry, "key-a"), 0, "unchanged: still empty");
        assert_eq!(drain(&registry, "key-b"), 3, "new limits: a new bucket");
        assert_eq!(drain(&registry, "key-c"), 1);
        registry.replace(vec![client("c", "key-c", 1)]);
        assert!(matches!(
            registry.admit(&KeyHash::of("key-a")),
            Err(Refusal::UnknownKey)
        ));
        clock.advance(Duration::from_secs(1));
        assert_eq!(drain(&registry, "key-c"), 1);
    }
}
