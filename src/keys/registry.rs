//! The key-registry actor: who a client key belongs to, and whether that client
//! may send one more request now.
//!
//! It owns the clients and their token buckets. Handlers send it the SHA-256 of
//! the key they received (the key itself never leaves the handler), so one actor
//! serves every worker without doing the hashing for them. Only known clients
//! have a bucket, so unknown keys cost nothing to remember.

use super::limiter::{ClientLimiter, Decision, RateLimitSnapshot};
use super::policy::{ClientPolicy, KeyHash};
use actix::prelude::*;
use governor::clock::{Clock, DefaultClock};
use std::sync::Arc;

/// Asks: may the holder of this key send a request now? Takes one token when the
/// key is known. Sent by every authenticated route before it reads the body.
#[derive(Message)]
#[rtype(result = "Result<Admission, Refusal>")]
pub struct Admit {
    pub key_hash: KeyHash,
}

/// The key is known and a token was taken.
#[derive(Clone, Debug)]
pub struct Admission {
    pub client: Arc<ClientPolicy>,
    pub rate: RateLimitSnapshot,
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
    },
}

/// Replaces the set of clients (start-up and reload). A client whose name and
/// limits are unchanged keeps its bucket; a removed client is gone at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplaceClients {
    pub clients: Vec<ClientPolicy>,
}

/// Asks how many buckets exist (one per configured client), to show that
/// unknown keys never create state.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct BucketCount;

struct Entry<C: Clock + Clone> {
    policy: Arc<ClientPolicy>,
    limiter: ClientLimiter<C>,
}

pub struct KeyRegistry<C: Clock + Clone = DefaultClock> {
    clients: Vec<Entry<C>>,
    clock: C,
}

impl<C: Clock + Clone> KeyRegistry<C> {
    pub fn new(clients: Vec<ClientPolicy>, clock: C) -> Self {
        let mut registry = KeyRegistry {
            clients: Vec::new(),
            clock,
        };
        registry.replace(clients);
        registry
    }

    fn replace(&mut self, clients: Vec<ClientPolicy>) {
        let mut old: Vec<Entry<C>> = std::mem::take(&mut self.clients);
        self.clients = clients
            .into_iter()
            .map(|policy| {
                let kept = old.iter().position(|e| {
                    e.policy.name == policy.name && e.limiter.limits() == policy.limits
                });
                let limiter = match kept {
                    Some(index) => old.swap_remove(index).limiter,
                    None => ClientLimiter::new(policy.limits, self.clock.clone()),
                };
                Entry {
                    policy: Arc::new(policy),
                    limiter,
                }
            })
            .collect();
    }

    /// Finds the client with this key, looking at every entry whatever matches,
    /// so the time taken does not depend on which client (if any) holds it.
    fn find(&self, key_hash: &KeyHash) -> Option<&Entry<C>> {
        let mut found = None;
        for entry in &self.clients {
            if entry.policy.key_hash.ct_eq(key_hash) {
                found = Some(entry);
            }
        }
        found
    }

    pub fn admit(&self, key_hash: &KeyHash) -> Result<Admission, Refusal> {
        let entry = self.find(key_hash).ok_or(Refusal::UnknownKey)?;
        match entry.limiter.take() {
            Decision::Allowed(rate) => Ok(Admission {
                client: entry.policy.clone(),
                rate,
            }),
            Decision::Limited {
                snapshot,
                retry_after_secs,
            } => Err(Refusal::Limited {
                client: entry.policy.clone(),
                rate: snapshot,
                retry_after_secs,
            }),
        }
    }
}

impl<C: Clock + Clone + Unpin + 'static> Actor for KeyRegistry<C>
where
    C::Instant: Unpin,
{
    type Context = Context<Self>;
}

impl<C: Clock + Clone + Unpin + 'static> Handler<Admit> for KeyRegistry<C>
where
    C::Instant: Unpin,
{
    type Result = Result<Admission, Refusal>;

    fn handle(&mut self, msg: Admit, _: &mut Context<Self>) -> Self::Result {
        self.admit(&msg.key_hash)
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
