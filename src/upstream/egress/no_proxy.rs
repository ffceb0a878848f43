//! `NO_PROXY` as curl and most tools read it: comma-separated host names,
//! domain suffixes (with or without a leading dot), IP addresses, or `*`.
//! The service calls one upstream host, so the list is matched once, at start-up.

/// Does `no_proxy` exempt `host` (the upstream's host, an IPv6 address with
/// or without brackets) from the proxy?
pub fn exempts(no_proxy: &str, host: &str) -> bool {
    let host = normalise(host);
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = normalise(strip_port(entry));
            let entry = entry.strip_prefix('.').unwrap_or(&entry);
            !entry.is_empty()
                && (host == entry
                    || host
                        .strip_suffix(entry)
                        .is_some_and(|head| head.ends_with('.')))
        })
}

fn normalise(host: &str) -> String {
    let host = host.trim().trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.to_ascii_lowercase()
}

/// `host:port` → `host`; a bare IPv6 address (several colons) is left whole.
fn strip_port(entry: &str) -> &str {
    if entry.starts_with('[') {
        return entry.find("]:").map_or(entry, |end| &entry[..=end]);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => entry,
    }
}
