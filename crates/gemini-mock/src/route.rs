//! Which upstream endpoint a request is for, parsed from the raw (undecoded) path.
//!
//! actix's router treats `{id}:{method}` as one segment, and upstream paths carry custom
//! verbs after the last ':', so the mock parses paths itself rather than with route
//! patterns; one parser also keeps the set of served endpoints in one place.

use actix_web::http::Method;

use super::resource_api::ResourceRoute;

/// Versions upstream serves.
pub(crate) const VERSIONS: [&str; 3] = ["v1", "v1beta", "v1alpha"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModelMethod {
    Generate,
    Stream,
    CountTokens,
    Embed,
    BatchEmbed,
}

impl ModelMethod {
    fn parse(verb: &str) -> Option<Self> {
        Some(match verb {
            "generateContent" => ModelMethod::Generate,
            "streamGenerateContent" => ModelMethod::Stream,
            "countTokens" => ModelMethod::CountTokens,
            "embedContent" => ModelMethod::Embed,
            "batchEmbedContents" => ModelMethod::BatchEmbed,
            _ => return None,
        })
    }

    /// The verb as it appears in the path and in upstream's 404 message.
    pub fn verb(self) -> &'static str {
        match self {
            ModelMethod::Generate => "generateContent",
            ModelMethod::Stream => "streamGenerateContent",
            ModelMethod::CountTokens => "countTokens",
            ModelMethod::Embed => "embedContent",
            ModelMethod::BatchEmbed => "batchEmbedContents",
        }
    }

    /// The gRPC method name, as in ErrorInfo metadata.
    fn rpc(self) -> &'static str {
        match self {
            ModelMethod::Generate => "GenerativeService.GenerateContent",
            ModelMethod::Stream => "GenerativeService.StreamGenerateContent",
            ModelMethod::CountTokens => "GenerativeService.CountTokens",
            ModelMethod::Embed => "GenerativeService.EmbedContent",
            ModelMethod::BatchEmbed => "GenerativeService.BatchEmbedContents",
        }
    }
}

/// The query parameters the mock reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query {
    /// `alt=sse`: stream as server-sent events rather than a JSON array.
    pub sse: bool,
    pub key: Option<String>,
    pub page_size: Option<String>,
    pub page_token: Option<String>,
    /// `updateMask` of a PATCH (cached contents).
    pub update_mask: Option<String>,
}

impl Query {
    /// Names and values are percent-decoded (`alt=%73se` is SSE), as Gemini's front end
    /// reads them; a pair that cannot be decoded is read leniently, never dropping the rest.
    pub fn parse(query_string: &str) -> Query {
        let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(query_string)
            .map(actix_web::web::Query::into_inner)
            .unwrap_or_default();
        let mut q = Query::default();
        for (name, value) in pairs {
            match name.as_str() {
                "alt" => q.sse = value == "sse",
                "key" => q.key = Some(value),
                "pageSize" | "page_size" => q.page_size = Some(value),
                "pageToken" | "page_token" => q.page_token = Some(value),
                "updateMask" | "update_mask" => q.update_mask = Some(value),
                _ => {}
            }
        }
        q
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `POST /{v}/models/{id}:{verb}` or `/{v}/tunedModels/{id}:{verb}`.
    Model {
        version: &'static str,
        tuned: bool,
        id: String,
        method: ModelMethod,
    },
    ListModels {
        version: &'static str,
    },
    GetModel {
        version: &'static str,
        id: String,
    },
    OpenAiChat {
        version: &'static str,
    },
    OpenAiEmbeddings {
        version: &'static str,
    },
    OpenAiModels {
        version: &'static str,
    },
    OpenAiModel {
        version: &'static str,
        id: String,
    },
    /// Files and cached contents (`resource_api`).
    Resource {
        version: &'static str,
        kind: ResourceRoute,
    },
}

impl Route {
    /// `None` for paths and methods upstream does not serve (it answers those with an HTML 404).
    pub fn parse(method: &Method, path: &str) -> Option<Route> {
        let rest = path.strip_prefix('/')?;
        let (rest, download) = match rest.strip_prefix("download/") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let mut segs = rest.split('/');
        let v = segs.next()?;
        let version = *VERSIONS.iter().find(|known| **known == v)?;
        let segs: Vec<&str> = segs.collect();
        let get = method == Method::GET;
        let post = method == Method::POST;
        if download {
            let kind = ResourceRoute::parse_download(method, &segs)?;
            return Some(Route::Resource { version, kind });
        }
        let route = match segs.as_slice() {
            ["models"] if get => Route::ListModels { version },
            [collection @ ("models" | "tunedModels"), seg] if !seg.is_empty() => {
                let tuned = *collection == "tunedModels";
                match seg.rsplit_once(':') {
                    Some((id, verb)) if post && !id.is_empty() => Route::Model {
                        version,
                        tuned,
                        id: id.to_owned(),
                        method: ModelMethod::parse(verb)?,
                    },
                    None if get && !tuned => Route::GetModel {
                        version,
                        id: (*seg).to_owned(),
                    },
                    _ => return None,
                }
            }
            ["openai", "chat", "completions"] if post => Route::OpenAiChat { version },
            ["openai", "embeddings"] if post => Route::OpenAiEmbeddings { version },
            ["openai", "models"] if get => Route::OpenAiModels { version },
            ["openai", "models", id] if get && !id.is_empty() => Route::OpenAiModel {
                version,
                id: (*id).to_owned(),
            },
            _ => Route::Resource {
                version,
                kind: ResourceRoute::parse(method, &segs)?,
            },
        };
        Some(route)
    }

    pub fn version(&self) -> &'static str {
        match self {
            Route::Model { version, .. }
            | Route::ListModels { version }
            | Route::GetModel { version, .. }
            | Route::OpenAiChat { version }
            | Route::OpenAiEmbeddings { version }
            | Route::OpenAiModels { version }
            | Route::OpenAiModel { version, .. }
            | Route::Resource { version, .. } => version,
        }
    }

    pub fn is_openai(&self) -> bool {
        matches!(
            self,
            Route::OpenAiChat { .. }
                | Route::OpenAiEmbeddings { .. }
                | Route::OpenAiModels { .. }
                | Route::OpenAiModel { .. }
        )
    }

    /// Calls that spend a model's quota.
    pub fn is_model_call(&self) -> bool {
        matches!(
            self,
            Route::Model { .. } | Route::OpenAiChat { .. } | Route::OpenAiEmbeddings { .. }
        )
    }

    /// The fully qualified gRPC method, for the 401 ErrorInfo of native routes.
    pub fn rpc_name(&self) -> String {
        let method = match self {
            Route::Model { method, .. } => method.rpc(),
            Route::ListModels { .. } => "ModelService.ListModels",
            Route::GetModel { .. } => "ModelService.GetModel",
            Route::Resource { kind, .. } => kind.rpc(),
            _ => "OpenAiService.Request",
        };
        format!("google.ai.generativelanguage.{}.{method}", self.version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_verb_at_the_last_colon() {
        let r = Route::parse(
            &Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
        );
        assert_eq!(
            r,
            Some(Route::Model {
                version: "v1beta",
                tuned: false,
                id: "gemini-2.5-flash".into(),
                method: ModelMethod::Generate
            })
        );
        let r = Route::parse(
            &Method::POST,
            "/v1/tunedModels/my-model:streamGenerateContent",
        );
        assert!(matches!(r, Some(Route::Model { tuned: true, .. })));
    }

    #[test]
    fn rejects_unserved_paths_and_methods() {
        assert_eq!(
            Route::parse(&Method::POST, "/v2/models/x:generateContent"),
            None
        );
        assert_eq!(
            Route::parse(&Method::GET, "/v1/models/x:generateContent"),
            None
        );
        assert_eq!(Route::parse(&Method::POST, "/v1/models/x:fooBar"), None);
        assert_eq!(Route::parse(&Method::POST, "/v1/models"), None);
        assert_eq!(
            Route::parse(&Method::GET, "/v1alpha/openai/models"),
            Some(Route::OpenAiModels { version: "v1alpha" })
        );
    }

    #[test]
    fn query_values_and_names_are_percent_decoded() {
        assert!(Query::parse("alt=%73se").sse);
        assert!(Query::parse("%61lt=sse").sse);
        assert!(!Query::parse("alt=json").sse);
        assert!(!Query::parse("").sse);
        assert!(!Query::parse("%24alt=json%3Benum-encoding%3Dint").sse);
        assert_eq!(
            Query::parse("key=a%2Bb%20c&alt=sse").key.as_deref(),
            Some("a+b c")
        );
        let q = Query::parse("key=k&alt=%FF&alt=sse");
        assert!(q.sse);
        assert_eq!(q.key.as_deref(), Some("k"));
        let broken = Query::parse("alt=sse&key=k&x=%zz&y");
        assert!(broken.sse);
        assert_eq!(broken.key.as_deref(), Some("k"));
    }
}
