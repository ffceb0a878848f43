//! Files and cached contents a request names. Gemini looks each one up in the caller's
//! project and answers 403 PERMISSION_DENIED, with no ErrorInfo reason, when it is not
//! there (another project's, expired, or never created): the request is refused, not
//! the key, and anyone can provoke it by naming someone else's file. A proxy with a key
//! pool must not retire a key for it, so the mock reproduces it faithfully.
//!
//! Files and cached contents live in their stores (`files`, `caches`), per project;
//! a file still PROCESSING is refused with Gemini's 400 FAILED_PRECONDITION.

use super::errors::ApiError;
use super::request::References;
use super::state::Shared;

/// Gemini's file ids: lowercase letters, digits and dashes, at most 40 characters when a
/// client names them.
/// (Longer ones are the files Gemini makes itself, a batch's answers.)
const MAX_FILE_ID: usize = 64;

/// Upstream's answer to a request of `project` on `model` (a bare id) naming stored
/// resources: the tokens of the cached content it builds on (0 without one), or the
/// error. The cache is looked up first: a request built on it is about nothing else
/// until then.
pub(crate) fn check(
    refs: &References<'_>,
    shared: &Shared,
    project: &str,
    model: &str,
) -> Result<u32, ApiError> {
    let mut cached_tokens = 0;
    if let Some(name) = refs.cached_content {
        let (cache_model, tokens) = holds_cached_content(shared, project, name)?;
        // Scenario models stand for any model, so they may use any cache.
        let request_model = format!("models/{model}");
        if !model.starts_with("mock-") && cache_model != request_model {
            return Err(ApiError::invalid(format!(
                "Model used by GenerateContent request ({request_model}) and CachedContent \
                 ({cache_model}) has to be the same."
            )));
        }
        if refs.sets_config {
            return Err(ApiError::invalid(
                "CachedContent can not be used with GenerateContent request setting \
                 system_instruction, tools or tool_config.\n\nProposed fix: move those values \
                 to CachedContent from GenerateContent request.",
            ));
        }
        cached_tokens = tokens;
    }
    check_files(refs, shared, project)?;
    Ok(cached_tokens)
}

/// The files a request (or a cached content being made) names must be the project's
/// and ACTIVE.
pub(crate) fn check_files(
    refs: &References<'_>,
    shared: &Shared,
    project: &str,
) -> Result<(), ApiError> {
    for uri in &refs.file_uris {
        if let Some(id) = file_id(uri) {
            holds_file(shared, project, id)?;
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

fn holds_file(shared: &Shared, project: &str, id: &str) -> Result<(), ApiError> {
    shared.files.check_usable(project, id)
}

/// The cached content's model and tokens, if `project` holds it.
fn holds_cached_content(
    shared: &Shared,
    project: &str,
    name: &str,
) -> Result<(String, u32), ApiError> {
    shared.caches.usable(project, name)
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
