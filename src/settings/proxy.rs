//! `UPSTREAM_PROXY`, and the conventional proxy variables it falls back to.

use super::{invalid, SettingsError};
use crate::upstream::egress::{self, Egress, Proxy};

/// Read in this order when `UPSTREAM_PROXY` is unset; the first set one wins.
const FALLBACKS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// The way out to Gemini, for calls to `upstream_host`. `UPSTREAM_PROXY` is
/// the service's own setting and wins; the conventional variables apply only
/// without it, and `NO_PROXY` / `no_proxy` (which belong to them) can exempt
/// the upstream host from them.
pub fn egress(
    get: &impl Fn(&str) -> Option<String>,
    upstream_host: &str,
) -> Result<Egress, SettingsError> {
    // Looked up before deciding, so that with nothing set every name is asked
    // for: the container tests learn which variables the service reads that way.
    let own = get("UPSTREAM_PROXY");
    let fallback = FALLBACKS
        .iter()
        .find_map(|&name| get(name).map(|value| (name, value)));
    let no_proxy = get("NO_PROXY").or_else(|| get("no_proxy"));
    if let Some(list) = own {
        return Ok(Egress::through(list_of(&list, "UPSTREAM_PROXY")?));
    }
    let Some((name, list)) = fallback else {
        return Ok(Egress::direct());
    };
    let proxies = list_of(&list, name)?;
    if no_proxy.is_some_and(|list| egress::exempts(&list, upstream_host)) {
        return Ok(Egress::direct());
    }
    Ok(Egress::through(proxies))
}

fn list_of(list: &str, variable: &'static str) -> Result<Vec<Proxy>, SettingsError> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    let mut proxies = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        if entry.is_empty() {
            return Err(invalid(variable, format!("entry {} is empty", n + 1)));
        }
        let proxy = Proxy::parse(entry).map_err(|problem| {
            // The entry itself is never quoted: it may hold a password.
            let which = if entries.len() > 1 {
                format!("entry {}: ", n + 1)
            } else {
                String::new()
            };
            invalid(variable, format!("{which}{problem}"))
        })?;
        proxies.push(proxy);
    }
    Ok(proxies)
}
