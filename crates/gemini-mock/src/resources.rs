//! Files and cached contents a request names. Gemini looks each one up in the caller's
//! project and answers 403 PERMISSION_DENIED, with no ErrorInfo reason, when it is not
//! there (another project's, expired, or never created): the request is refused, not
//! the key, and anyone can provoke it by naming someone else's file. A proxy with a key
//! pool must not retire a key for it, so the mock reproduces it faithfully.
//!
//! The mock stores no files or caches yet, so every reference misses; `holds_file` and
//! `holds_cached_content` are where stored ones will be looked up.

use super::errors::ApiError;
use super::request::References;
use super::state::Shared;

/// Gemini's file ids: lowercase letters, digits and dashes, at most 40 characters.
const MAX_FILE_ID: usize = 40;

/// Upstream's answer to a request naming a resource the caller does not hold. The
/// cache is looked up first: a request built on it is about nothing else until then.
pub(crate) fn check(refs: &References<'_>, shared: &Shared) -> Result<(), ApiError> {
    if let Some(name) = refs.cached_content {
        if !holds_cached_content(shared, name) {
            return Err(ApiError::forbidden());
        }
    }
    for uri in &refs.file_uris {
        if let Some(id) = file_id(uri) {
            if !holds_file(shared, id) {
                return Err(ApiError::file_denied(id));
            }
        }
    }
    Ok(())
}

/// The id of a Files API resource named by a `fileUri`: `files/<id>`, alone or at the
/// end of a URL. Other URIs (a video page, say) are not files of the project.
pub(crate) fn file_id(uri: &str) -> Option<&str> {
    let (before, id) = uri.rsplit_once("files/")?;
    let whole_segment = before.is_empty() || before.ends_with('/');
    let well_formed = (1..=MAX_FILE_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (whole_segment && well_formed).then_some(id)
}

fn holds_file(_shared: &Shared, _id: &str) -> bool {
    false
}

fn holds_cached_content(_shared: &Shared, _name: &str) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_are_read_from_names_and_urls_ending_in_files_id() {
        let cases = [
            ("files/abc-123", Some("abc-123")),
            (
                "https://generativelanguage.googleapis.com/v1beta/files/vq8ruf6o8qt5",
                Some("vq8ruf6o8qt5"),
            ),
            ("files/", None),
            ("files/Abc", None),
            ("files/a/b", None),
            ("myfiles/abc", None),
            ("https://www.youtube.com/watch?v=abc", None),
            ("files/abc?alt=media", None),
        ];
        for (uri, expected) in cases {
            assert_eq!(file_id(uri), expected, "{uri}");
        }
    }
}
