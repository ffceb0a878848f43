//! The quota side of admission (docs/keys-file.md#quotas). The client's own
//! windows are checked with its request bucket, before the body is read; the
//! windows of its model's group once the route knows the model; tokens are
//! charged when the answer ends.

use super::policy::ClientPolicy;
use crate::metrics::Metrics;
use crate::quota::usage::ScopedUsage;
use crate::quota::{Charge, ClientUsage, Days, QuotaRefusal, UsageStore, WallClock};
use std::sync::{Arc, RwLock};

/// What the in-process quota windows need: the time, the days, where each
/// client's usage is kept, and the gauges to keep up to date.
pub struct QuotaContext {
    pub days: Days,
    pub clock: WallClock,
    pub store: Arc<UsageStore>,
    pub metrics: Arc<Metrics>,
    /// The clients with quotas as the registry last set them, for the gauges
    /// refreshed at each scrape.
    pub clients: RwLock<Vec<(Arc<ClientPolicy>, Arc<ClientUsage>)>>,
    /// Each scrape sets the gauges from these windows (the memory backend),
    /// so a request need not. With Redis they are only the fallback, and
    /// their gauges are set as they change.
    refreshed_at_scrape: bool,
}

impl QuotaContext {
    pub fn new(
        days: Days,
        clock: WallClock,
        store: Arc<UsageStore>,
        metrics: Arc<Metrics>,
        refreshed_at_scrape: bool,
    ) -> Self {
        QuotaContext {
            days,
            clock,
            store,
            metrics,
            clients: RwLock::new(Vec::new()),
            refreshed_at_scrape,
        }
    }

    /// Sets every client's gauges from its in-process windows (the memory
    /// backend's; with Redis the gauges follow Redis's answers instead).
    pub fn publish_all(&self) {
        let clients = self.clients.read().map(|c| c.clone()).unwrap_or_default();
        for (client, usage) in &clients {
            self.publish(client, usage);
        }
    }

    /// The client's usage, or `None` for a client without quotas (it needs none).
    pub fn usage_of(&self, client: &ClientPolicy) -> Option<Arc<ClientUsage>> {
        (!client.quotas.is_empty()).then(|| self.store.of(&client.name))
    }

    /// Checks the client's own windows and counts the request in them.
    pub fn admit_total(
        &self,
        client: &ClientPolicy,
        usage: &ClientUsage,
    ) -> Result<(), QuotaRefusal> {
        let now = self.clock.now();
        let result = usage.admit(&client.quotas.total, None, now, &self.days);
        self.changed(client, usage);
        result
    }

    /// After a change of the client's windows: sets its gauges now, unless
    /// the next scrape does.
    pub fn changed(&self, client: &ClientPolicy, usage: &ClientUsage) {
        if !self.refreshed_at_scrape {
            self.publish(client, usage);
        }
    }

    /// Sets the client's `gemini_proxy_client_quota_remaining` gauges.
    pub fn publish(&self, client: &ClientPolicy, usage: &ClientUsage) {
        let windows = usage.usage(&client.quotas, self.clock.now(), &self.days);
        publish_remaining(&self.metrics, &client.name, &windows);
    }
}

/// Sets one client's remaining gauges from its windows.
pub fn publish_remaining(metrics: &Metrics, client: &str, windows: &[ScopedUsage]) {
    for (group, kind, usage) in windows {
        let limit = kind.label(group.as_deref());
        let remaining = i64::try_from(usage.remaining).unwrap_or(i64::MAX);
        metrics
            .client_quota_remaining
            .with_label_values(&[client, &limit])
            .set(remaining);
    }
}

/// Removes every gauge of a client (it left the keys file, or its quotas changed).
pub fn forget_remaining(metrics: &Metrics, client: &ClientPolicy) {
    let quotas = &client.quotas;
    let scopes = std::iter::once((None, &quotas.total)).chain(
        quotas
            .groups
            .iter()
            .map(|g| (Some(g.name.as_str()), &g.limits)),
    );
    for (group, limits) in scopes {
        for (kind, _) in limits.windows() {
            let limit = kind.label(group);
            let _ = metrics
                .client_quota_remaining
                .remove_label_values(&[&*client.name, limit.as_str()]);
        }
    }
}

/// The quota state an admitted request carries to its model stage.
#[derive(Clone)]
pub enum QuotaGate {
    /// The client has no quotas.
    Open,
    /// The in-process windows (memory backend, or Redis unreachable).
    Local {
        usage: Arc<ClientUsage>,
        context: Arc<QuotaContext>,
    },
    /// Redis's windows, read when the request was admitted.
    Shared(super::redis_quota::SharedGate),
}

impl std::fmt::Debug for QuotaGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuotaGate::Open => "QuotaGate::Open",
            QuotaGate::Local { .. } => "QuotaGate::Local",
            QuotaGate::Shared(_) => "QuotaGate::Shared",
        })
    }
}

impl QuotaGate {
    /// Checks the windows of the group `model` falls in, if any, and answers
    /// what to charge when the answer ends. A refusal takes back the request
    /// the client's own windows counted, so it charges nothing.
    pub fn for_model(
        &self,
        client: &Arc<ClientPolicy>,
        model: Option<&str>,
    ) -> Result<Charge, QuotaRefusal> {
        let group = model.and_then(|m| client.quotas.group_of(m));
        match self {
            QuotaGate::Open => Ok(Charge::none()),
            QuotaGate::Local { usage, context } => {
                let now = context.clock.now();
                if let Some(g) = group.and_then(|i| client.quotas.groups.get(i)) {
                    if let Err(refusal) = usage.admit(&g.limits, Some(&g.name), now, &context.days)
                    {
                        usage.undo(&client.quotas.total, None, now, &context.days);
                        context.changed(client, usage);
                        return Err(refusal);
                    }
                }
                context.changed(client, usage);
                let (usage, context, client) = (usage.clone(), context.clone(), client.clone());
                Ok(Charge::new(move |tokens, _| {
                    let now = context.clock.now();
                    usage.charge(&client.quotas, group, tokens, now, &context.days);
                    context.changed(&client, &usage);
                }))
            }
            QuotaGate::Shared(gate) => gate.for_model(client, group),
        }
    }
}
