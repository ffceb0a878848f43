//! The quota fields of the keys file (docs/keys-file.md#quotas): a client's
//! `tokens_per_minute`, `requests_per_day` and `tokens_per_day`, and its
//! `[[client.quota]]` groups.
//!
//! Kept apart from [`super::file`] so each stays readable in one sitting; the
//! errors follow its style (what is wrong and what to fix, never a key), and
//! it adds the entry's label in front.

use super::file::model_id;
use crate::quota::{QuotaGroup, QuotaLimits};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::num::NonZeroU64;

/// The largest quota accepted. The Redis backend counts in Lua, whose numbers
/// are doubles: integers stay exact up to 2^53 (about 9e15), and a window may
/// hold its limit plus one answer's overshoot, so limits stop well below
/// that. No real quota comes near it.
pub(super) const MAX_QUOTA: u64 = 1_000_000_000_000_000;

/// A `[[client.quota]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaGroupToml {
    models: Vec<String>,
    tokens_per_minute: Option<i64>,
    requests_per_day: Option<i64>,
    tokens_per_day: Option<i64>,
}

/// The three quota fields of one table, as written; `None` = the line is absent.
#[derive(Clone, Copy, Default)]
pub(super) struct RawQuotaLimits {
    pub tokens_per_minute: Option<i64>,
    pub requests_per_day: Option<i64>,
    pub tokens_per_day: Option<i64>,
}

/// A table's quotas, each field falling back to `inherited`'s (the defaults'
/// for a client, none for `[defaults]` and for a group).
pub(super) fn quota_limits(
    raw: RawQuotaLimits,
    inherited: QuotaLimits,
) -> Result<QuotaLimits, String> {
    Ok(QuotaLimits {
        tokens_per_minute: quota(
            "tokens_per_minute",
            raw.tokens_per_minute,
            inherited.tokens_per_minute,
        )?,
        requests_per_day: quota(
            "requests_per_day",
            raw.requests_per_day,
            inherited.requests_per_day,
        )?,
        tokens_per_day: quota(
            "tokens_per_day",
            raw.tokens_per_day,
            inherited.tokens_per_day,
        )?,
    })
}

fn quota(
    field: &str,
    value: Option<i64>,
    inherited: Option<NonZeroU64>,
) -> Result<Option<NonZeroU64>, String> {
    let Some(v) = value else {
        return Ok(inherited);
    };
    u64::try_from(v)
        .ok()
        .filter(|&v| v <= MAX_QUOTA)
        .and_then(NonZeroU64::new)
        .map(Some)
        .ok_or_else(|| format!("`{field}` must be a whole number from 1 to {MAX_QUOTA}, not {v}"))
}

/// A client's quota groups, checked against each other and against the
/// models the client may use (`allowed`, after the defaults; `None` = any).
pub(super) fn quota_groups(
    raw: Vec<QuotaGroupToml>,
    allowed: Option<&BTreeSet<String>>,
) -> Result<Vec<QuotaGroup>, String> {
    let mut groups: Vec<QuotaGroup> = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let label = format!("quota group #{}", index + 1);
        let group = quota_group(entry, allowed).map_err(|p| format!("{label}: {p}"))?;
        for (other_index, other) in groups.iter().enumerate() {
            if let Some(model) = group.models.intersection(&other.models).next() {
                return Err(format!(
                    "{label}: model `{model}` is also in quota group #{}; a model counts in \
                     one group only, so remove it from one of them",
                    other_index + 1
                ));
            }
        }
        groups.push(group);
    }
    Ok(groups)
}

fn quota_group(
    raw: QuotaGroupToml,
    allowed: Option<&BTreeSet<String>>,
) -> Result<QuotaGroup, String> {
    if raw.models.is_empty() {
        return Err("`models = []` names no model; list the models this group counts".into());
    }
    let listed = raw
        .models
        .iter()
        .map(|m| model_id(m))
        .collect::<Result<Vec<String>, String>>()?;
    if let Some(allowed) = allowed {
        if let Some(model) = listed.iter().find(|m| !allowed.contains(*m)) {
            return Err(format!(
                "model `{model}` is not in the client's `models`, so the client cannot use it; \
                 add it to the client's `models` or remove it from the group"
            ));
        }
    }
    let limits = quota_limits(
        RawQuotaLimits {
            tokens_per_minute: raw.tokens_per_minute,
            requests_per_day: raw.requests_per_day,
            tokens_per_day: raw.tokens_per_day,
        },
        QuotaLimits::default(),
    )?;
    if limits.is_empty() {
        return Err(
            "gives no limit, so it would count nothing; add `tokens_per_minute`, \
             `requests_per_day` or `tokens_per_day`, or remove the group"
                .into(),
        );
    }
    let name = listed.first().cloned().unwrap_or_default();
    Ok(QuotaGroup {
        models: listed.into_iter().collect(),
        limits,
        name,
    })
}

#[cfg(test)]
#[path = "file_quota_tests.rs"]
mod tests;
