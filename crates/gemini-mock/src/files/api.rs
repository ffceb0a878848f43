//! The Files API routes besides the upload: `GET /{v}/files/{id}`, `GET /{v}/files`,
//! `DELETE /{v}/files/{id}` and the download, each seeing only the caller's project.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use serde::Serialize;

use super::{FileResource, GOOGLE_ORIGIN};
use crate::errors::ApiError;
use crate::paging;
use crate::reply::Reply;
use crate::state::Shared;

/// Files per page when `pageSize` is not given, and at most (Gemini's documented values).
const DEFAULT_PAGE: usize = 10;
const MAX_PAGE: usize = 100;

/// The origin of the URLs the mock hands out: its own, or Google's when
/// `upload_url_google` asks the mock to look like the real thing to a proxy.
pub(crate) fn origin(shared: &Shared) -> String {
    if shared.config().upload_url_google {
        GOOGLE_ORIGIN.to_owned()
    } else {
        shared.base_url.clone()
    }
}

pub(crate) fn get(
    shared: &Shared,
    project: &str,
    version: &str,
    id: &str,
) -> Result<Reply, ApiError> {
    let file = shared.files.get(project, id)?;
    Ok(Reply::json(&file.resource(id, &origin(shared), version)))
}

pub(crate) fn delete(shared: &Shared, project: &str, id: &str) -> Result<Reply, ApiError> {
    shared.files.delete(project, id)?;
    Ok(Reply::json(&serde_json::json!({})))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FilePage<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileResource<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

pub(crate) fn list(
    shared: &Shared,
    project: &str,
    version: &str,
    page_size: Option<&str>,
    page_token: Option<&str>,
) -> Result<Reply, ApiError> {
    let all = shared.files.list(project);
    let (range, next_page_token) =
        paging::window(all.len(), page_size, page_token, DEFAULT_PAGE, MAX_PAGE)?;
    let origin = origin(shared);
    let files = all[range]
        .iter()
        .map(|(id, f)| f.resource(id, &origin, version))
        .collect();
    Ok(Reply::json(&FilePage {
        files,
        next_page_token,
    }))
}

/// The file's bytes. Gemini serves downloads of files it generated only (python's
/// `files.download` refuses an uploaded `File` before asking); the mock serves the
/// uploaded bytes it kept, so a proxy's download path can be tested, and answers a
/// file too big to have been kept as Gemini answers an uploaded one.
pub(crate) fn download(shared: &Shared, project: &str, id: &str) -> Result<Reply, ApiError> {
    let file = shared.files.get(project, id)?;
    if file.state(SystemTime::now()) != super::FileState::Active {
        return Err(ApiError::new(
            400,
            "FAILED_PRECONDITION",
            format!("The File {id} is not in an ACTIVE state and usage is not allowed."),
        ));
    }
    let Some(data) = file.data else {
        return Err(ApiError::invalid(
            "Only generated files can be downloaded, uploaded files can't be downloaded.",
        ));
    };
    Ok(Reply::full(
        StatusCode::OK,
        static_mime(&file.mime_type),
        data,
    ))
}

/// `Reply` takes a static content type: the common types are answered as themselves,
/// the rest as `application/octet-stream`.
fn static_mime(mime: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "text/plain",
        "text/html",
        "text/csv",
        "text/markdown",
        "application/json",
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "audio/mpeg",
        "audio/wav",
        "video/mp4",
        "video/webm",
    ];
    KNOWN
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(mime))
        .unwrap_or("application/octet-stream")
}
