//! The stored-resource endpoints a project owns: Files (`/{v}/files…`, and the
//! download under `/download/{v}/…`) and cached contents (`/{v}/cachedContents…`).
//! They go through the same pipeline as model calls (auth, scenarios, delivery); this
//! module only says which endpoint a path is and answers it for the caller's project.

use actix_web::http::Method;

use super::caches;
use super::errors::ApiError;
use super::files::api as files_api;
use super::reply::Reply;
use super::route::Query;
use super::state::Shared;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ResourceRoute {
    /// `POST /upload/{v}/files`, served by `files::upload`; here for its RPC name.
    UploadFile,
    ListFiles,
    GetFile(String),
    DeleteFile(String),
    DownloadFile(String),
    CreateCache,
    ListCaches,
    GetCache(String),
    UpdateCache(String),
    DeleteCache(String),
}

impl ResourceRoute {
    /// The route of `segs`, the path's segments after the version.
    pub fn parse(method: &Method, segs: &[&str]) -> Option<ResourceRoute> {
        let id = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        Some(match (segs, method.as_str()) {
            (["files"], "GET") => ResourceRoute::ListFiles,
            (["files", seg], "GET") => match seg.split_once(':') {
                None => ResourceRoute::GetFile(id(seg)?),
                Some((file, "download")) => ResourceRoute::DownloadFile(id(file)?),
                Some(_) => return None,
            },
            (["files", seg], "DELETE") if !seg.contains(':') => ResourceRoute::DeleteFile(id(seg)?),
            (["cachedContents"], "POST") => ResourceRoute::CreateCache,
            (["cachedContents"], "GET") => ResourceRoute::ListCaches,
            (["cachedContents", seg], method) if !seg.contains(':') => match method {
                "GET" => ResourceRoute::GetCache(id(seg)?),
                "PATCH" => ResourceRoute::UpdateCache(id(seg)?),
                "DELETE" => ResourceRoute::DeleteCache(id(seg)?),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// `/download/{v}/files/{id}:download`, the media host's spelling of the download.
    pub fn parse_download(method: &Method, segs: &[&str]) -> Option<ResourceRoute> {
        match ResourceRoute::parse(method, segs)? {
            d @ ResourceRoute::DownloadFile(_) => Some(d),
            _ => None,
        }
    }

    /// The gRPC method, for the 401 ErrorInfo of a Bearer token.
    pub fn rpc(&self) -> &'static str {
        match self {
            ResourceRoute::UploadFile => "FileService.CreateFile",
            ResourceRoute::ListFiles => "FileService.ListFiles",
            ResourceRoute::GetFile(_) => "FileService.GetFile",
            ResourceRoute::DeleteFile(_) => "FileService.DeleteFile",
            ResourceRoute::DownloadFile(_) => "FileService.DownloadFile",
            ResourceRoute::CreateCache => "CacheService.CreateCachedContent",
            ResourceRoute::ListCaches => "CacheService.ListCachedContents",
            ResourceRoute::GetCache(_) => "CacheService.GetCachedContent",
            ResourceRoute::UpdateCache(_) => "CacheService.UpdateCachedContent",
            ResourceRoute::DeleteCache(_) => "CacheService.DeleteCachedContent",
        }
    }
}

/// The answer for `project`, the caller's.
pub(crate) fn answer(
    route: &ResourceRoute,
    version: &str,
    body: &[u8],
    query: &Query,
    project: &str,
    shared: &Shared,
) -> Result<Reply, ApiError> {
    let page_size = query.page_size.as_deref();
    let page_token = query.page_token.as_deref();
    match route {
        ResourceRoute::UploadFile => Err(ApiError::invalid(
            "Files are uploaded at /upload/{version}/files.",
        )),
        ResourceRoute::ListFiles => {
            files_api::list(shared, project, version, page_size, page_token)
        }
        ResourceRoute::GetFile(id) => files_api::get(shared, project, version, id),
        ResourceRoute::DeleteFile(id) => files_api::delete(shared, project, id),
        ResourceRoute::DownloadFile(id) => files_api::download(shared, project, id),
        ResourceRoute::CreateCache => caches::create(shared, project, version, body),
        ResourceRoute::ListCaches => caches::list(shared, project, page_size, page_token),
        ResourceRoute::GetCache(id) => caches::get(shared, project, id),
        ResourceRoute::UpdateCache(id) => {
            caches::update(shared, project, id, body, query.update_mask.as_deref())
        }
        ResourceRoute::DeleteCache(id) => caches::delete(shared, project, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Route;

    fn parse(method: Method, path: &str) -> Option<Route> {
        Route::parse(&method, path)
    }

    #[test]
    fn resource_paths_and_methods() {
        let file = |kind| {
            Some(Route::Resource {
                version: "v1beta",
                kind,
            })
        };
        assert_eq!(
            parse(Method::GET, "/v1beta/files/abc"),
            file(ResourceRoute::GetFile("abc".into()))
        );
        assert_eq!(
            parse(Method::GET, "/v1beta/files/abc:download"),
            file(ResourceRoute::DownloadFile("abc".into()))
        );
        assert_eq!(
            parse(Method::GET, "/download/v1beta/files/abc:download"),
            file(ResourceRoute::DownloadFile("abc".into()))
        );
        assert_eq!(parse(Method::GET, "/download/v1beta/files/abc"), None);
        assert_eq!(
            parse(Method::PATCH, "/v1beta/cachedContents/c1"),
            file(ResourceRoute::UpdateCache("c1".into()))
        );
        assert_eq!(parse(Method::POST, "/v1beta/files"), None);
        assert_eq!(parse(Method::PUT, "/v1beta/cachedContents/c1"), None);
        assert_eq!(parse(Method::GET, "/v1beta/files/"), None);
        assert_eq!(parse(Method::DELETE, "/v1beta/files/a:download"), None);
    }
}
