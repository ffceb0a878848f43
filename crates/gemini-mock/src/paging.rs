//! Paging of the resource lists (files, cached contents), as `GET /{v}/models` pages:
//! `pageSize` clamped to the list's maximum, tokens opaque to clients that carry the
//! offset of the next page.

use std::ops::Range;

use super::errors::ApiError;

/// The slice of a `len`-long list one page covers, and the token of the next page.
pub(crate) fn window(
    len: usize,
    page_size: Option<&str>,
    page_token: Option<&str>,
    default: usize,
    max: usize,
) -> Result<(Range<usize>, Option<String>), ApiError> {
    let size = match page_size.map(str::parse::<i64>) {
        None => default,
        Some(Ok(n)) if n <= 0 => default,
        Some(Ok(n)) => usize::try_from(n).unwrap_or(max).min(max),
        Some(Err(_)) => {
            return Err(ApiError::invalid(
                "Invalid value at 'page_size' (TYPE_INT32)",
            ))
        }
    };
    let start = match page_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("mockpage-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::invalid("Invalid page token."))?,
    };
    let start = start.min(len);
    let end = start.saturating_add(size).min(len);
    let next = (end < len).then(|| format!("mockpage-{end}"));
    Ok((start..end, next))
}
