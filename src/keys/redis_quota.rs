//! Quota windows in Redis (`RATE_LIMIT_BACKEND=redis`): one script
//! ([`quota.lua`](quota.lua)) takes the request token and checks the client's
//! windows in one round trip at admission, and one more call charges the
//! tokens when the answer ends. Every replica sees the same windows; on
//! Redis's clock. When Redis does not answer, the replica uses its own
//! in-process windows, as it does its own bucket.

use super::limiter::Decision;
use super::policy::ClientPolicy;
use super::quota_gate::{publish_remaining, QuotaContext};
use super::redis_limiter::{decision, emission_interval_us, CheckError, KEY_PREFIX};
use crate::quota::limits::{QuotaLimits, WindowKind};
use crate::quota::usage::ScopedUsage;
use crate::quota::{Charge, ClientUsage, QuotaRefusal, WindowUsage};
use jiff::Timestamp;
use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::Arc;
use std::time::Duration;

pub fn quota_script() -> Script {
    Script::new(include_str!("quota.lua"))
}

/// What the script is asked to do.
#[derive(Clone, Copy)]
enum Mode {
    Admit,
    Charge {
        tokens: u64,
        group: usize,
        count: i8,
    },
    Read,
}

/// The keys and arguments of one client's call.
fn invocation<'a>(
    script: &'a Script,
    client: &ClientPolicy,
    bucket_key: &str,
    context: &QuotaContext,
    mode: Mode,
    now_us: Option<i64>,
) -> redis::ScriptInvocation<'a> {
    let now = now_us
        .and_then(|us| Timestamp::from_microsecond(us).ok())
        .unwrap_or_else(|| context.clock.now());
    let today = context.days.day_of(now);
    let next = context.days.day_of(today.end);
    let mut call = script.key(bucket_key);
    let quotas = &client.quotas;
    let scopes = std::iter::once(("all".to_owned(), &quotas.total)).chain(
        quotas
            .groups
            .iter()
            .map(|g| (format!("g:{}", g.name), &g.limits)),
    );
    let mut limits_args: Vec<u64> = Vec::new();
    for (scope, limits) in scopes {
        let base = format!("{KEY_PREFIX}q:{}:{scope}", client.name);
        call.key(format!("{base}:tpm"))
            .key(format!("{base}:day:{}", today.date))
            .key(format!("{base}:day:{}", next.date));
        limits_args.extend([
            limits.tokens_per_minute.map_or(0, |l| l.get()),
            limits.requests_per_day.map_or(0, |l| l.get()),
            limits.tokens_per_day.map_or(0, |l| l.get()),
        ]);
    }
    let (mode_name, tokens, group, count) = match mode {
        Mode::Admit => ("admit", 0, 0, 0),
        Mode::Charge {
            tokens,
            group,
            count,
        } => ("charge", tokens, group, count),
        Mode::Read => ("read", 0, 0, 0),
    };
    call.arg(mode_name)
        .arg(emission_interval_us(client.limits))
        .arg(client.limits.burst.get())
        .arg(today.end.as_microsecond())
        .arg(next.end.as_microsecond())
        .arg(tokens)
        .arg(group)
        .arg(count)
        .arg(now_us.map_or_else(String::new, |us| us.to_string()));
    for limit in limits_args {
        call.arg(limit);
    }
    call
}

/// The script's answer, read.
struct Answer {
    head: [i64; 6],
    groups: Vec<(i64, i64)>,
    used: Vec<[i64; 3]>,
    day_end: i64,
}

fn read_answer(values: Vec<i64>, groups: usize, with_groups: bool) -> Option<Answer> {
    let head: [i64; 6] = values.get(..6)?.try_into().ok()?;
    let mut rest = values.get(6..)?;
    let mut group_states = Vec::new();
    if with_groups {
        for _ in 0..groups {
            group_states.push((*rest.first()?, *rest.get(1)?));
            rest = rest.get(2..)?;
        }
    }
    let mut used = Vec::new();
    for _ in 0..=groups {
        used.push([*rest.first()?, *rest.get(1)?, *rest.get(2)?]);
        rest = rest.get(3..)?;
    }
    Some(Answer {
        head,
        groups: group_states,
        used,
        day_end: *rest.first()?,
    })
}

fn kind_of(code: i64) -> Option<WindowKind> {
    match code {
        1 => Some(WindowKind::TokensPerMinute),
        2 => Some(WindowKind::RequestsPerDay),
        3 => Some(WindowKind::TokensPerDay),
        _ => None,
    }
}

fn limit_of(limits: &QuotaLimits, kind: WindowKind) -> u64 {
    let limit = match kind {
        WindowKind::TokensPerMinute => limits.tokens_per_minute,
        WindowKind::RequestsPerDay => limits.requests_per_day,
        WindowKind::TokensPerDay => limits.tokens_per_day,
    };
    limit.map_or(0, |l| l.get())
}

fn refusal(
    limits: &QuotaLimits,
    group: Option<&str>,
    kind: i64,
    wait_us: i64,
) -> Option<QuotaRefusal> {
    let kind = kind_of(kind)?;
    Some(QuotaRefusal {
        kind,
        group: group.map(str::to_owned),
        limit: limit_of(limits, kind),
        retry_after: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
    })
}

/// The windows of every scope, from the script's used numbers.
fn windows(client: &ClientPolicy, answer: &Answer, now: Timestamp) -> Vec<ScopedUsage> {
    let quotas = &client.quotas;
    let day_end = Timestamp::from_microsecond(answer.day_end).unwrap_or(now);
    let scopes = std::iter::once((None, &quotas.total)).chain(
        quotas
            .groups
            .iter()
            .map(|g| (Some(g.name.clone()), &g.limits)),
    );
    let mut out = Vec::new();
    for ((group, limits), used) in scopes.zip(&answer.used) {
        for (kind, limit) in limits.windows() {
            let (used, reset_in) = match kind {
                WindowKind::TokensPerMinute => {
                    let used = u64::try_from(used[0]).unwrap_or(0);
                    (
                        used,
                        Duration::from_secs_f64(used as f64 * 60.0 / limit as f64),
                    )
                }
                WindowKind::RequestsPerDay => (
                    u64::try_from(used[1]).unwrap_or(0),
                    crate::quota::clock::until(now, day_end),
                ),
                WindowKind::TokensPerDay => (
                    u64::try_from(used[2]).unwrap_or(0),
                    crate::quota::clock::until(now, day_end),
                ),
            };
            out.push((
                group.clone(),
                kind,
                WindowUsage::new(limit, used, now, reset_in),
            ));
        }
    }
    out
}

/// How to reach Redis for one client's quotas.
pub struct SharedQuotas {
    pub conn: ConnectionManager,
    pub script: Arc<Script>,
    pub timeout: Duration,
    pub context: Arc<QuotaContext>,
}

/// The outcome of an admission in Redis.
pub struct SharedAdmission {
    pub decision: Decision,
    /// The client's own windows refused the request.
    pub refusal: Option<QuotaRefusal>,
    pub gate: SharedGate,
}

/// What an admitted request carries to its model stage: its groups' windows as
/// Redis read them at admission, and how to charge.
#[derive(Clone)]
pub struct SharedGate {
    groups: Arc<[Option<QuotaRefusal>]>,
    charger: Arc<Charger>,
}

struct Charger {
    conn: ConnectionManager,
    script: Arc<Script>,
    timeout: Duration,
    context: Arc<QuotaContext>,
    bucket_key: Arc<str>,
    /// The replica's own windows, charged instead while Redis does not answer.
    local: Option<Arc<ClientUsage>>,
}

impl SharedQuotas {
    /// Takes a request token and checks the client's windows, in one round trip.
    pub async fn admit(
        &self,
        client: Arc<ClientPolicy>,
        bucket_key: Arc<str>,
        local: Option<Arc<ClientUsage>>,
    ) -> Result<SharedAdmission, CheckError> {
        let mut conn = self.conn.clone();
        let call = invocation(
            &self.script,
            &client,
            &bucket_key,
            &self.context,
            Mode::Admit,
            None,
        );
        let values: Vec<i64> =
            match tokio::time::timeout(self.timeout, call.invoke_async(&mut conn)).await {
                Ok(result) => result?,
                Err(_) => return Err(CheckError::Timeout(self.timeout.as_millis())),
            };
        let groups = client.quotas.groups.len();
        let answer = read_answer(values, groups, true)
            .ok_or_else(|| CheckError::Redis("an answer of an unexpected shape".into()))?;
        let [bucket_ok, remaining, retry_us, reset_us, kind, wait_us] = answer.head;
        let decision = decision(client.limits, bucket_ok == 1, remaining, retry_us, reset_us);
        let own = refusal(&client.quotas.total, None, kind, wait_us);
        let group_states = client
            .quotas
            .groups
            .iter()
            .zip(&answer.groups)
            .map(|(g, (kind, wait))| refusal(&g.limits, Some(&g.name), *kind, *wait))
            .collect();
        let now = self.context.clock.now();
        publish_remaining(
            &self.context.metrics,
            &client.name,
            &windows(&client, &answer, now),
        );
        Ok(SharedAdmission {
            decision,
            refusal: own,
            gate: SharedGate {
                groups: group_states,
                charger: Arc::new(Charger {
                    conn: self.conn.clone(),
                    script: self.script.clone(),
                    timeout: self.timeout,
                    context: self.context.clone(),
                    bucket_key,
                    local,
                }),
            },
        })
    }

    /// Reads the client's bucket and windows without taking anything.
    pub async fn read(
        &self,
        client: &ClientPolicy,
        bucket_key: &str,
    ) -> Result<(Option<Timestamp>, Vec<ScopedUsage>), CheckError> {
        let mut conn = self.conn.clone();
        let call = invocation(
            &self.script,
            client,
            bucket_key,
            &self.context,
            Mode::Read,
            None,
        );
        let values: Vec<i64> =
            match tokio::time::timeout(self.timeout, call.invoke_async(&mut conn)).await {
                Ok(result) => result?,
                Err(_) => return Err(CheckError::Timeout(self.timeout.as_millis())),
            };
        let answer = read_answer(values, client.quotas.groups.len(), false)
            .ok_or_else(|| CheckError::Redis("an answer of an unexpected shape".into()))?;
        let tat = (answer.head[0] > 0)
            .then(|| Timestamp::from_microsecond(answer.head[0]).ok())
            .flatten();
        let now = self.context.clock.now();
        Ok((tat, windows(client, &answer, now)))
    }
}

impl SharedGate {
    /// The model stage: refuses when the model's group was closed at
    /// admission; else answers the charge, which also counts the request in
    /// the group's day (the group was unknown when the script ran).
    pub fn for_model(
        &self,
        client: &Arc<ClientPolicy>,
        group: Option<usize>,
    ) -> Result<Charge, QuotaRefusal> {
        if let Some(Some(refusal)) = group.and_then(|g| self.groups.get(g)) {
            // Takes back the request the total counted: a refusal charges nothing.
            self.charger.send(client.clone(), 0, 0, -1);
            return Err(refusal.clone());
        }
        let (charger, client) = (self.charger.clone(), client.clone());
        let scope = group.map_or(0, |g| g + 2);
        // The group's request is counted with the first charge, once.
        let mut count = i8::from(scope > 0);
        Ok(Charge::new(move |tokens, _| {
            charger.send(client.clone(), tokens, scope, count);
            count = 0;
        }))
    }
}

impl Charger {
    /// Runs the charge in the background on this thread's runtime; falls back
    /// to the replica's own windows when Redis does not answer.
    fn send(self: &Arc<Self>, client: Arc<ClientPolicy>, tokens: u64, scope: usize, count: i8) {
        if tokens == 0 && count == 0 {
            return;
        }
        let charger = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            charger.locally(&client, tokens, scope);
            return;
        };
        runtime.spawn(async move {
            let mode = Mode::Charge {
                tokens,
                group: scope,
                count,
            };
            let mut conn = charger.conn.clone();
            let call = invocation(
                &charger.script,
                &client,
                &charger.bucket_key,
                &charger.context,
                mode,
                None,
            );
            let result =
                tokio::time::timeout(charger.timeout, call.invoke_async::<Vec<i64>>(&mut conn))
                    .await;
            match result {
                Ok(Ok(values)) => {
                    if let Some(answer) = read_answer(values, client.quotas.groups.len(), false) {
                        let now = charger.context.clock.now();
                        let windows = windows(&client, &answer, now);
                        publish_remaining(&charger.context.metrics, &client.name, &windows);
                    }
                }
                Ok(Err(error)) => {
                    log::warn!(
                        "quotas: Redis did not take a charge ({}); charged on this replica",
                        CheckError::from(error)
                    );
                    charger.locally(&client, tokens, scope);
                }
                Err(_) => {
                    log::warn!(
                        "quotas: Redis did not take a charge in time; charged on this replica"
                    );
                    charger.locally(&client, tokens, scope);
                }
            }
        });
    }

    fn locally(&self, client: &ClientPolicy, tokens: u64, scope: usize) {
        if let Some(usage) = &self.local {
            let now = self.context.clock.now();
            let group = scope.checked_sub(2);
            usage.charge(&client.quotas, group, tokens, now, &self.context.days);
        }
    }
}
