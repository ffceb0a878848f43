//! What each client used, in process: the memory backend's windows, and the
//! Redis backend's fallback while Redis does not answer.

use super::clock::{until, Days};
use super::limits::{QuotaLimits, Quotas, WindowKind};
use super::window::{DayCount, MinuteTokens, WindowUsage};
use crate::errors::whole_seconds_up;
use jiff::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A request refused by one of its quota windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaRefusal {
    pub kind: WindowKind,
    /// The group's name, for a group's window.
    pub group: Option<String>,
    pub limit: u64,
    pub retry_after: Duration,
}

impl QuotaRefusal {
    /// The limit's name as the keys file writes it, and for a group which one.
    pub fn limit_name(&self) -> String {
        self.kind.label(self.group.as_deref())
    }

    pub fn retry_after_secs(&self) -> u64 {
        whole_seconds_up(self.retry_after).max(1)
    }

    pub fn message(&self) -> String {
        let what = match &self.group {
            None => format!("this client's {} ({})", self.kind.name(), self.limit),
            Some(group) => format!(
                "this client's {} ({}) for the models of its `{group}` quota group",
                self.kind.name(),
                self.limit
            ),
        };
        format!("{what} is used up; retry in {} s", self.retry_after_secs())
    }
}

/// One scope's windows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope {
    pub minute: MinuteTokens,
    pub day: DayCount,
}

impl Scope {
    /// `Err` with the first closed window; else `Ok`.
    fn check(
        &mut self,
        limits: &QuotaLimits,
        group: Option<&str>,
        now: Timestamp,
        days: &Days,
    ) -> Result<(), QuotaRefusal> {
        let day = days.day_of(now);
        let today = *self.day.of(&day);
        let refuse = |kind: WindowKind, limit: u64, retry_after| QuotaRefusal {
            kind,
            group: group.map(str::to_owned),
            limit,
            retry_after,
        };
        for (kind, limit) in limits.windows() {
            let closed = match kind {
                WindowKind::TokensPerMinute => self.minute.closed_for(now, limit),
                WindowKind::RequestsPerDay => {
                    (today.requests >= limit).then(|| until(now, day.end))
                }
                WindowKind::TokensPerDay => (today.tokens >= limit).then(|| until(now, day.end)),
            };
            if let Some(wait) = closed {
                return Err(refuse(kind, limit, wait));
            }
        }
        Ok(())
    }

    fn usage(
        &self,
        limits: &QuotaLimits,
        now: Timestamp,
        days: &Days,
    ) -> Vec<(WindowKind, WindowUsage)> {
        let day = days.day_of(now);
        let today = if self.day.date == Some(day.date) {
            self.day
        } else {
            DayCount::default()
        };
        limits
            .windows()
            .map(|(kind, limit)| {
                let usage = match kind {
                    WindowKind::TokensPerMinute => WindowUsage::new(
                        limit,
                        self.minute.used(now, limit).ceil() as u64,
                        now,
                        self.minute.empty_in(now, limit),
                    ),
                    WindowKind::RequestsPerDay => {
                        WindowUsage::new(limit, today.requests, now, until(now, day.end))
                    }
                    WindowKind::TokensPerDay => {
                        WindowUsage::new(limit, today.tokens, now, until(now, day.end))
                    }
                };
                (kind, usage)
            })
            .collect()
    }
}

#[derive(Default)]
struct State {
    total: Scope,
    /// By group name; a group that leaves the keys file keeps its counts
    /// until the client does, in case it comes back.
    groups: HashMap<String, Scope>,
}

impl State {
    fn scope(&mut self, group: Option<&str>) -> &mut Scope {
        match group {
            None => &mut self.total,
            Some(name) => self.groups.entry(name.to_owned()).or_default(),
        }
    }
}

/// One client's windows. Kept by client name across reloads, whatever its
/// limits become, so a change of limits keeps what it used today.
#[derive(Default)]
pub struct ClientUsage {
    state: Mutex<State>,
    /// Something changed since the state file was last written.
    dirty: AtomicBool,
}

/// A client's window, for `/usage` and the gauges: the group's name (none for
/// the client's total), the kind, the numbers.
pub type ScopedUsage = (Option<String>, WindowKind, WindowUsage);

impl ClientUsage {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks one scope's windows and, when all are open, counts one request
    /// in its day. `group` is the group's name, or `None` for the client's total.
    pub fn admit(
        &self,
        limits: &QuotaLimits,
        group: Option<&str>,
        now: Timestamp,
        days: &Days,
    ) -> Result<(), QuotaRefusal> {
        if limits.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let scope = state.scope(group);
        scope.check(limits, group, now, days)?;
        scope.day.of(&days.day_of(now)).requests += 1;
        self.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Takes back a request [`ClientUsage::admit`] counted, for a request
    /// another window then refused: a refused request charges nothing.
    pub fn undo(&self, limits: &QuotaLimits, group: Option<&str>, now: Timestamp, days: &Days) {
        if limits.is_empty() {
            return;
        }
        let mut state = self.lock();
        let day = state.scope(group).day.of(&days.day_of(now));
        day.requests = day.requests.saturating_sub(1);
    }

    /// Charges an answer's tokens to the client's total and to `group`.
    pub fn charge(
        &self,
        quotas: &Quotas,
        group: Option<usize>,
        tokens: u64,
        now: Timestamp,
        days: &Days,
    ) {
        if tokens == 0 {
            return;
        }
        let day = days.day_of(now);
        let mut state = self.lock();
        let scopes = std::iter::once((None, &quotas.total)).chain(
            group
                .and_then(|g| quotas.groups.get(g))
                .map(|g| (Some(g.name.as_str()), &g.limits)),
        );
        for (name, limits) in scopes {
            let scope = state.scope(name);
            if let Some(limit) = limits.tokens_per_minute {
                scope.minute.add(now, limit.get(), tokens);
            }
            let today = scope.day.of(&day);
            today.tokens = today.tokens.saturating_add(tokens);
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Every window the client has, with what it used.
    pub fn usage(&self, quotas: &Quotas, now: Timestamp, days: &Days) -> Vec<ScopedUsage> {
        let mut state = self.lock();
        let mut out: Vec<ScopedUsage> = state
            .total
            .usage(&quotas.total, now, days)
            .into_iter()
            .map(|(kind, usage)| (None, kind, usage))
            .collect();
        for group in &quotas.groups {
            let scope = state.scope(Some(&group.name));
            out.extend(
                scope
                    .usage(&group.limits, now, days)
                    .into_iter()
                    .map(|(kind, usage)| (Some(group.name.clone()), kind, usage)),
            );
        }
        out
    }

    /// The day counts, for the state file; clears the changed mark.
    pub fn days(&self) -> (DayCount, Vec<(String, DayCount)>) {
        self.dirty.store(false, Ordering::Relaxed);
        let state = self.lock();
        let groups = state
            .groups
            .iter()
            .map(|(name, scope)| (name.clone(), scope.day))
            .collect();
        (state.total.day, groups)
    }

    /// Puts back day counts read from the state file.
    pub fn restore_days(&self, total: DayCount, groups: Vec<(String, DayCount)>) {
        let mut state = self.lock();
        state.total.day = total;
        for (name, day) in groups {
            state.scope(Some(&name)).day = day;
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed)
    }
}

/// Every client's usage, by client name.
#[derive(Default)]
pub struct UsageStore {
    clients: Mutex<HashMap<Arc<str>, Arc<ClientUsage>>>,
}

impl UsageStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<ClientUsage>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The usage of the client named `name`, made empty the first time.
    pub fn of(&self, name: &Arc<str>) -> Arc<ClientUsage> {
        self.lock().entry(name.clone()).or_default().clone()
    }

    /// Forgets clients that are gone from the keys file.
    pub fn retain(&self, names: &[Arc<str>]) {
        self.lock().retain(|name, _| names.contains(name));
    }

    /// Every client's usage, for the state file.
    pub fn all(&self) -> Vec<(Arc<str>, Arc<ClientUsage>)> {
        self.lock()
            .iter()
            .map(|(name, usage)| (name.clone(), usage.clone()))
            .collect()
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
