//! Building the service from settings, and running it.
//!
//! Build and run are separate so tests can start the real server on port 0 and
//! learn its port before they send anything.

use crate::keys::file::{load_clients, KeysFileError};
use crate::keys::redis_health::RedisHealth;
use crate::keys::redis_limiter::RedisLimiter;
use crate::keys::registry::BucketCount;
use crate::keys::registry::ClientTable;
use crate::keys::reload::{self, Reloader, WatchGuard};
use crate::keys::worker;
use crate::keys::{Admit, KeyRegistry, ReplaceClients};
use crate::metrics::Metrics;
use crate::middleware::{method, observe, panics};
use crate::model_id::ModelId;
use crate::routes;
use crate::routes::stream::ClientSocket;
use crate::settings::{CorsOrigins, RateLimitBackend, Settings};
use crate::upstream::key_pool::KeyPool;
use crate::upstream::leak_guard::LeakGuard;
use crate::upstream::recheck::{self, KeyRecheck, RecheckNow};
use crate::upstream::{UpstreamContext, UpstreamPool};
use actix::prelude::*;
use actix_cors::Cors;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{http, web, App, HttpServer};
use governor::clock::{Clock, DefaultClock};
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

/// In-flight requests get this long to finish after SIGTERM.
const SHUTDOWN_GRACE_SECS: u64 = 30;
/// Pending connections the kernel may queue for us.
const LISTEN_BACKLOG: u32 = 8192;
/// Slow clients must finish sending their headers within this.
const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The request limits handlers apply.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_prompt_chars: usize,
    pub default_model: ModelId,
    pub upstream_timeout: Duration,
    pub client_stall_timeout: Duration,
}

/// Shared by every worker: the actors' addresses and the settings handlers need.
pub struct AppState {
    pub limits: RequestLimits,
    pub registry: Recipient<Admit>,
    pub upstream: UpstreamPool,
    pub metrics: Arc<Metrics>,
}

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    server: Server,
    upstream: UpstreamPool,
    registry_arbiter: ArbiterHandle,
    recheck_arbiter: ArbiterHandle,
    recheck: Addr<KeyRecheck>,
    bucket_count: Recipient<BucketCount>,
    reloader: Arc<Reloader>,
    _watch: WatchGuard,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("invalid setting KEYS_FILE: {0}")]
    Keys(#[from] KeysFileError),
    #[error("metrics: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("invalid setting REDIS_URL: {0}")]
    Redis(#[from] crate::keys::redis_limiter::CheckError),
    #[error("server: {0}")]
    Server(#[from] std::io::Error),
}

impl Application {
    /// Binds `HOST:PORT` and builds the service; must run inside an actix System.
    pub fn build(settings: Settings) -> Result<Application, StartupError> {
        // Every setting is checked before anything is bound.
        load_clients(&settings.keys_file, &settings.api_keys)?;
        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        Application::build_with_listener(settings, listener, true)
    }

    /// Builds the service on a bound listener. `handle_signals` is false in
    /// in-process tests, where many servers share one process.
    pub fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
        handle_signals: bool,
    ) -> Result<Application, StartupError> {
        Application::build_with_clock(settings, listener, handle_signals, DefaultClock::default())
    }

    /// As [`Application::build_with_listener`], with the clock the rate limiter
    /// reads, so tests can move time instead of sleeping.
    pub fn build_with_clock<C>(
        settings: Settings,
        listener: TcpListener,
        handle_signals: bool,
        clock: C,
    ) -> Result<Application, StartupError>
    where
        C: Clock + Clone + Send + Sync + Unpin + 'static,
        C::Instant: Unpin,
    {
        let clients = load_clients(&settings.keys_file, &settings.api_keys)?;
        if clients.is_empty() {
            log::warn!("no client keys are configured (API_KEYS or the keys file): every request will be refused");
        }
        let port = listener.local_addr()?.port();
        let metrics = Arc::new(Metrics::new()?);
        let context = Arc::new(UpstreamContext {
            base_url: settings.gemini_base_url.as_str().to_owned(),
            keys: KeyPool::new(&settings.gemini_api_keys, metrics.clone()),
            leak_guard: LeakGuard::new(&settings.gemini_api_keys),
            metrics: metrics.clone(),
            retry_budget: Default::default(),
        });
        let (recheck, recheck_arbiter) = recheck::start(
            context.clone(),
            settings.key_recheck_interval,
            settings.upstream_connect_timeout,
            settings.default_model.resource(),
        );
        let upstream = UpstreamPool::start(
            context,
            settings.upstream_actors.map_or(0, NonZeroUsize::get),
            settings.max_in_flight.get(),
            settings.upstream_connect_timeout,
        );
        let shared_limits = match &settings.rate_limit_backend {
            RateLimitBackend::Memory => None,
            RateLimitBackend::Redis(redis) => {
                let client = redis::Client::open(redis.connection.clone())
                    .map_err(crate::keys::redis_limiter::CheckError::from)?;
                let health = RedisHealth::new(
                    metrics.rate_limit_backend_up.with_label_values(&["redis"]),
                    redis.display(),
                );
                Some((client, redis.timeout, health))
            }
        };
        // With the in-process backend each worker admits from the published
        // clients on its own thread (keys::worker); Redis checks stay with the
        // registry, next to its connection.
        let table = shared_limits
            .is_none()
            .then(|| Arc::new(ClientTable::default()));
        let published = table.clone();
        let registry_arbiter = Arbiter::new().handle();
        let registry = KeyRegistry::start_in_arbiter(&registry_arbiter, move |_| {
            let registry = KeyRegistry::new(clients, clock);
            let Some((client, timeout, health)) = shared_limits else {
                return match published {
                    Some(table) => registry.publishing_to(table),
                    None => registry,
                };
            };
            // The connection is made here, so it lives on this arbiter's
            // runtime next to the actor that uses it.
            match RedisLimiter::connect(client, timeout) {
                Ok(limiter) => registry.with_redis(limiter, health),
                Err(error) => {
                    log::error!("rate limits: the Redis client could not be set up ({error}); this replica applies its in-process limits");
                    registry
                }
            }
        });
        let reloader = Arc::new(Reloader::new(
            settings.keys_file.clone(),
            settings.api_keys.clone(),
            registry.clone().recipient::<ReplaceClients>(),
            metrics.clone(),
        ));
        let watch = reload::watch(reloader.clone());
        if handle_signals {
            let pool = upstream.clone();
            // Refused keys come back at once; rests stay, since Gemini's quotas did not change.
            reload::reload_on_sighup(reloader.clone(), move || pool.context().keys.restore_all());
        }
        let state = web::Data::new(AppState {
            limits: RequestLimits {
                max_body_bytes: settings.max_body_bytes.get(),
                max_prompt_chars: settings.max_prompt_chars.get(),
                default_model: settings.default_model.clone(),
                upstream_timeout: settings.upstream_timeout,
                client_stall_timeout: settings.client_stall_timeout,
            },
            registry: registry.clone().recipient(),
            upstream: upstream.clone(),
            metrics: metrics.clone(),
        });
        let cors = settings.cors_allowed_origins.clone();
        let per_worker = settings.upstream_actors.is_none();
        let connect_timeout = settings.upstream_connect_timeout;
        let mut server = HttpServer::new(move || {
            if per_worker {
                state.upstream.start_worker_actor(connect_timeout);
            }
            if let Some(table) = &table {
                worker::start_for_this_worker(table.clone());
            }
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
                .wrap(from_fn(panics::catch_panics))
                .wrap(cors_middleware(&cors))
                .wrap(from_fn(observe::observe))
                .wrap(metrics.http_middleware())
                .wrap(from_fn(method::fold_unknown_methods))
        })
        .workers(settings.workers.get())
        // Bursts of new connections wait in the kernel instead of being dropped
        // (the kernel caps this at net.core.somaxconn).
        .backlog(LISTEN_BACKLOG)
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .client_request_timeout(CLIENT_HEADER_TIMEOUT)
        // A client that closes its side has gone away: drop its handler, which
        // cancels its upstream call, instead of finishing work nobody will read.
        .h1_allow_half_closed(false)
        // So a stream whose client stopped reading can be cut (routes::stream).
        .on_connect(ClientSocket::record)
        .listen(listener)?;
        if !handle_signals {
            server = server.disable_signals();
        }
        log::info!("listening on http://{}:{port}", settings.host);
        Ok(Application {
            port,
            server: server.run(),
            upstream,
            registry_arbiter,
            recheck_arbiter,
            recheck,
            bucket_count: registry.recipient(),
            reloader,
            _watch: watch,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server (tests use it).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Operations on the running service that tests (and embedders) need.
    pub fn control(&self) -> AppControl {
        AppControl {
            reloader: self.reloader.clone(),
            bucket_count: self.bucket_count.clone(),
            recheck: self.recheck.clone(),
            upstream: self.upstream.clone(),
        }
    }

    /// Serves until stopped (SIGTERM/SIGINT drain in-flight requests first).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.upstream.stop();
        self.registry_arbiter.stop();
        self.recheck_arbiter.stop();
        result
    }
}

/// A handle on a running service, cheap to clone.
#[derive(Clone)]
pub struct AppControl {
    reloader: Arc<Reloader>,
    bucket_count: Recipient<BucketCount>,
    recheck: Addr<KeyRecheck>,
    upstream: UpstreamPool,
}

impl AppControl {
    /// Reloads the keys file now, as SIGHUP does.
    pub async fn reload(&self) -> Result<usize, KeysFileError> {
        self.reloader.reload("requested").await
    }

    /// Re-checks the refused server keys now, as the timer does; answers
    /// how many came back.
    pub async fn recheck_keys(&self) -> usize {
        self.recheck.send(RecheckNow).await.unwrap_or(0)
    }

    /// What `SIGHUP` does to the key pool: refused keys come back, rests stay.
    pub fn restore_refused_keys(&self) {
        self.upstream.context().keys.restore_all();
    }

    /// How many rate-limit buckets exist: one per configured client, whatever
    /// keys were tried.
    pub async fn bucket_count(&self) -> usize {
        self.bucket_count.send(BucketCount).await.unwrap_or(0)
    }
}

fn cors_middleware(origins: &CorsOrigins) -> Cors {
    let base = Cors::default()
        .allowed_methods([http::Method::GET, http::Method::POST])
        .allowed_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            http::header::HeaderName::from_static("x-api-key"),
            http::header::HeaderName::from_static("x-goog-api-key"),
            http::header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            http::header::RETRY_AFTER,
            http::header::HeaderName::from_static("x-request-id"),
            http::header::HeaderName::from_static("ratelimit-limit"),
            http::header::HeaderName::from_static("ratelimit-remaining"),
            http::header::HeaderName::from_static("ratelimit-reset"),
        ])
        .max_age(3600);
    match origins {
        CorsOrigins::None => base,
        // Any origin, never with credentials (actix-cors sends `*` only without them).
        CorsOrigins::Any => base.send_wildcard().allow_any_origin(),
        CorsOrigins::List(list) => list
            .iter()
            .fold(base, |cors, origin| cors.allowed_origin(origin)),
    }
}
