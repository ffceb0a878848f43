//! What a client's quotas are, as the keys file gives them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::num::NonZeroU64;

/// The limits of one scope: the client as a whole, or one group of models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    pub tokens_per_minute: Option<NonZeroU64>,
    pub requests_per_day: Option<NonZeroU64>,
    pub tokens_per_day: Option<NonZeroU64>,
}

impl QuotaLimits {
    pub fn is_empty(&self) -> bool {
        self.tokens_per_minute.is_none()
            && self.requests_per_day.is_none()
            && self.tokens_per_day.is_none()
    }

    /// The windows this scope has, with their limits, in a fixed order.
    pub fn windows(&self) -> impl Iterator<Item = (WindowKind, u64)> + '_ {
        [
            (WindowKind::TokensPerMinute, self.tokens_per_minute),
            (WindowKind::RequestsPerDay, self.requests_per_day),
            (WindowKind::TokensPerDay, self.tokens_per_day),
        ]
        .into_iter()
        .filter_map(|(kind, limit)| limit.map(|l| (kind, l.get())))
    }
}

/// One kind of quota window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowKind {
    TokensPerMinute,
    RequestsPerDay,
    TokensPerDay,
}

impl WindowKind {
    /// The keys file's own name, used in `/usage`, metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::TokensPerMinute => "tokens_per_minute",
            WindowKind::RequestsPerDay => "requests_per_day",
            WindowKind::TokensPerDay => "tokens_per_day",
        }
    }

    /// The window's name in `/usage`, metrics and messages: the keys file's
    /// own, and for a group's window `…:{group}` (the group's first model).
    pub fn label(self, group: Option<&str>) -> String {
        match group {
            None => self.name().to_owned(),
            Some(group) => format!("{}:{group}", self.name()),
        }
    }

    /// The short name of the `RateLimit-Policy` header.
    fn policy_name(self) -> &'static str {
        match self {
            WindowKind::TokensPerMinute => "tpm",
            WindowKind::RequestsPerDay => "rpd",
            WindowKind::TokensPerDay => "tpd",
        }
    }

    /// The window's nominal length in seconds (a calendar day may be 23 or 25 hours).
    fn policy_seconds(self) -> u64 {
        match self {
            WindowKind::TokensPerMinute => 60,
            WindowKind::RequestsPerDay | WindowKind::TokensPerDay => 86_400,
        }
    }
}

/// A `[[client.quota]]` group: some models counted apart, with their own limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaGroup {
    /// Model ids without `models/`; never empty.
    pub models: BTreeSet<String>,
    pub limits: QuotaLimits,
    /// The group's name in metrics, `/usage` and Redis keys: its first model
    /// as the keys file lists it.
    pub name: String,
}

/// All of a client's quotas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    pub total: QuotaLimits,
    pub groups: Vec<QuotaGroup>,
}

impl Quotas {
    /// A client without quotas needs no window at all.
    pub fn is_empty(&self) -> bool {
        self.total.is_empty() && self.groups.is_empty()
    }

    /// The group `model` (an id without `models/`) counts in, if any.
    pub fn group_of(&self, model: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.models.contains(model))
    }

    /// The `RateLimit-Policy` items of the quotas, after the bucket's own
    /// (`"rpm";q=600;w=60, "tpd";q=20000000;w=86400, "rpd:gemini-2.5-pro";q=500;w=86400`).
    pub fn policy_items(&self, out: &mut String) {
        let scopes = std::iter::once((None, &self.total)).chain(
            self.groups
                .iter()
                .map(|g| (Some(g.name.as_str()), &g.limits)),
        );
        for (group, limits) in scopes {
            for (kind, limit) in limits.windows() {
                let name = kind.policy_name();
                let seconds = kind.policy_seconds();
                let _ = match group {
                    None => write!(out, ", \"{name}\";q={limit};w={seconds}"),
                    Some(group) => write!(out, ", \"{name}:{group}\";q={limit};w={seconds}"),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(v)
    }

    #[test]
    fn policy_items_list_every_window_in_order() {
        let quotas = Quotas {
            total: QuotaLimits {
                tokens_per_minute: n(400_000),
                requests_per_day: None,
                tokens_per_day: n(20_000_000),
            },
            groups: vec![QuotaGroup {
                models: BTreeSet::from(["gemini-2.5-pro".to_owned()]),
                limits: QuotaLimits {
                    requests_per_day: n(500),
                    ..QuotaLimits::default()
                },
                name: "gemini-2.5-pro".into(),
            }],
        };
        let mut out = String::new();
        quotas.policy_items(&mut out);
        assert_eq!(
            out,
            ", \"tpm\";q=400000;w=60, \"tpd\";q=20000000;w=86400, \"rpd:gemini-2.5-pro\";q=500;w=86400"
        );
        assert_eq!(quotas.group_of("gemini-2.5-pro"), Some(0));
        assert_eq!(quotas.group_of("gemini-2.5-flash"), None);
    }
}
