//! Building the service from settings, and running it.
//!
//! Build and run are separate so tests can start the real server on port 0 and
//! learn its port before they send anything. Building is a few small steps,
//! each taking what the one before made: the client registry (with the
//! rate-limiter clock), the upstream side (key pool, actors, re-check), then
//! the server, whose factory gives each HTTP worker its own handles.

use crate::app::{create_app, AppOptions};
use crate::keys::file::{load_clients, KeysFileError};
use crate::keys::quota_gate::QuotaContext;
use crate::keys::redis_health::RedisHealth;
use crate::keys::redis_limiter::{CheckError, RedisLimiter};
use crate::keys::registry::{BucketCount, ClientTable};
use crate::keys::reload::{self, Reloader, WatchGuard};
use crate::keys::{worker, Admit, ClientPolicy, KeyRegistry, ReadUsage, ReplaceClients};
use crate::live_sessions::LiveSessions;
use crate::metrics::Metrics;
use crate::ownership::Ownership;
use crate::quota::{state_file, Days, UsageStore, WallClock};
use crate::routes::stream::ClientSocket;
use crate::settings::{RateLimitBackend, Settings};
use crate::state::{AppState, Phase, Readiness, RequestLimits};
use crate::tls::{CertResolver, TlsFileError};
use crate::upstream::client::UpstreamConnect;
use crate::upstream::key_pool::KeyPool;
use crate::upstream::leak_guard::LeakGuard;
use crate::upstream::recheck::{self, KeyRecheck, RecheckNow};
use crate::upstream::relay::StreamTimeouts;
use crate::upstream::{UpstreamContext, UpstreamPool};
use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, HttpServer};
use governor::clock::{Clock, DefaultClock};
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

/// Pending connections the kernel may queue for us.
const LISTEN_BACKLOG: u32 = 8192;
/// Slow clients must finish sending their headers within this.
const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake takes one or two round trips; a client still at it after
/// this holds the connection open on purpose, as a slow sender of headers
/// would (actix's own default, 3 s, is tight for a distant mobile client).
const TLS_HANDSHAKE_TIMEOUT: Duration = CLIENT_HEADER_TIMEOUT;

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    server: Server,
    /// The separate `/metrics` listener, when `METRICS_ADDR` asks for one.
    metrics_server: Option<(u16, Server)>,
    readiness: Arc<Readiness>,
    /// Told by a second stop signal: stop without waiting for the drain.
    stop_now: Arc<tokio::sync::Notify>,
    registry: Registry,
    upstream: UpstreamSide,
    reloader: Arc<Reloader>,
    live_sessions: Arc<LiveSessions>,
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
    Redis(#[from] CheckError),
    #[error("invalid setting {0}")]
    Tls(#[from] TlsFileError),
    #[error("TLS: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("server: {0}")]
    Server(#[from] std::io::Error),
}

/// How the built service treats the process it runs in.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Handle SIGHUP (reload) and SIGTERM/SIGINT (drain; a second signal stops
    /// at once). False in in-process tests, where many servers share one process.
    pub handle_signals: bool,
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
        let options = Options {
            handle_signals: true,
        };
        Application::build_with_clock(settings, listener, options, DefaultClock::default())
    }

    /// Builds the service on a bound listener.
    pub fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
        options: Options,
    ) -> Result<Application, StartupError> {
        Application::build_with_clock(settings, listener, options, DefaultClock::default())
    }

    /// As [`Application::build_with_listener`], with the clock the rate limiter
    /// reads, so tests can move time instead of sleeping.
    pub fn build_with_clock<C>(
        settings: Settings,
        listener: TcpListener,
        options: Options,
        clock: C,
    ) -> Result<Application, StartupError>
    where
        C: Clock + Clone + Send + Sync + Unpin + 'static,
        C::Instant: Unpin,
    {
        Application::build_with_clocks(settings, listener, options, clock, WallClock::system())
    }

    /// As [`Application::build_with_clock`], with the wall clock the quota
    /// windows read too (days, tokens per minute).
    pub fn build_with_clocks<C>(
        settings: Settings,
        listener: TcpListener,
        options: Options,
        clock: C,
        wall: WallClock,
    ) -> Result<Application, StartupError>
    where
        C: Clock + Clone + Send + Sync + Unpin + 'static,
        C::Instant: Unpin,
    {
        let clients = load_clients(&settings.keys_file, &settings.api_keys)?;
        if clients.is_empty() {
            log::warn!("no client keys are configured (API_KEYS or the keys file): every request will be refused");
        }
        // The settings checked the files but keep only their paths.
        let tls = match &settings.tls {
            Some(files) => Some(CertResolver::load(files.clone())?),
            None => None,
        };
        let metrics = Arc::new(Metrics::new()?);
        let (registry, table) = Registry::start(&settings, clients, clock, wall, &metrics)?;
        let upstream = UpstreamSide::start(&settings, &metrics);
        let live_sessions = Arc::new(LiveSessions::new(metrics.clone()));
        let reloader = Arc::new(
            Reloader::new(
                settings.keys_file.clone(),
                settings.api_keys.clone(),
                registry.replace.clone(),
                metrics.clone(),
                tls.clone(),
            )
            .ending_sessions(live_sessions.clone()),
        );
        let watch = reload::watch(reloader.clone());
        if options.handle_signals {
            let context = upstream.pool.context().clone();
            // Refused keys come back at once; rests stay, since Gemini's quotas did not change.
            reload::reload_on_sighup(reloader.clone(), move || context.keys.restore_all());
        }
        let port = listener.local_addr()?.port();
        let metrics_server = match settings.metrics_addr {
            Some(address) => Some(serve_metrics(address, &metrics, upstream.pool.context())?),
            None => None,
        };
        let readiness = Arc::new(Readiness::default());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = serve(
            &settings,
            listener,
            tls,
            Shared {
                metrics,
                registry: registry.admit.clone(),
                usage: registry.usage.clone(),
                table,
                upstream: upstream.pool.clone(),
                readiness: readiness.clone(),
                live_sessions: live_sessions.clone(),
            },
        )?;
        log::info!("listening on {scheme}://{}:{port}", settings.host);
        let stop_now = Arc::new(tokio::sync::Notify::new());
        if options.handle_signals {
            let handles = [
                Some(server.handle()),
                metrics_server.as_ref().map(|(_, s)| s.handle()),
            ];
            actix_rt::spawn(drain_on_signals(
                handles.into_iter().flatten().collect(),
                readiness.clone(),
                live_sessions.clone(),
                settings.drain_timeout,
                stop_now.clone(),
            ));
        }
        // The keys file is loaded and every listener bound: work may come.
        readiness.set(Phase::Ready);
        Ok(Application {
            port,
            server,
            metrics_server,
            readiness,
            stop_now,
            registry,
            upstream,
            reloader,
            live_sessions,
            _watch: watch,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the separate `/metrics` listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(port, _)| *port)
    }

    /// A handle to stop the server (tests use it).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Operations on the running service that tests (and embedders) need.
    pub fn control(&self) -> AppControl {
        AppControl {
            reloader: self.reloader.clone(),
            bucket_count: self.registry.bucket_count.clone(),
            recheck: self.upstream.recheck.clone(),
            upstream: self.upstream.pool.clone(),
            readiness: self.readiness.clone(),
            live_sessions: self.live_sessions.clone(),
        }
    }

    /// Serves until stopped (SIGTERM and SIGINT drain in-flight requests first).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|(_, server)| {
            let handle = server.handle();
            actix_rt::spawn(server);
            handle
        });
        // A server that is draining takes no other command until it is done,
        // so the second signal's "at once" is to stop waiting for it.
        let result = tokio::select! {
            result = self.server => result,
            _ = self.stop_now.notified() => Ok(()),
        };
        self.readiness.set(Phase::Draining);
        if let Some(metrics) = metrics {
            metrics.stop(false).await;
        }
        self.upstream.pool.stop();
        self.upstream.recheck_arbiter.stop();
        self.registry.arbiter.stop();
        if let Some((path, store)) = &self.registry.state_file {
            state_file::save(path, store, true);
        }
        result
    }
}

/// The clients the registry publishes for the workers' own registries
/// (in-process backend only).
type Published<C> = Option<Arc<ClientTable<C>>>;

/// The key-registry actor on its arbiter, by the messages it takes.
struct Registry {
    admit: Recipient<Admit>,
    usage: Recipient<ReadUsage>,
    /// Where the memory backend keeps daily usage across restarts.
    state_file: Option<(std::path::PathBuf, Arc<UsageStore>)>,
    replace: Recipient<ReplaceClients>,
    bucket_count: Recipient<BucketCount>,
    arbiter: ArbiterHandle,
}

impl Registry {
    /// Starts the registry; with the in-process backend, also answers the
    /// table it publishes the clients in, for the workers' own registries.
    fn start<C>(
        settings: &Settings,
        clients: Vec<ClientPolicy>,
        clock: C,
        wall: WallClock,
        metrics: &Arc<Metrics>,
    ) -> Result<(Registry, Published<C>), StartupError>
    where
        C: Clock + Clone + Send + Sync + Unpin + 'static,
        C::Instant: Unpin,
    {
        let shared_limits = match &settings.rate_limit_backend {
            RateLimitBackend::Memory => None,
            RateLimitBackend::Redis(redis) => {
                let client =
                    redis::Client::open(redis.connection.clone()).map_err(CheckError::from)?;
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
        let store = Arc::new(UsageStore::default());
        // With Redis, every window (daily usage included) lives in Redis.
        let state_file = match (&settings.rate_limit_backend, &settings.quota_state_file) {
            (RateLimitBackend::Memory, Some(path)) => {
                state_file::load(path, &store);
                Some((path.clone(), store.clone()))
            }
            _ => None,
        };
        let memory = matches!(settings.rate_limit_backend, RateLimitBackend::Memory);
        let quota = Arc::new(QuotaContext::new(
            Days::new(settings.quota_timezone.zone.clone()),
            wall,
            store,
            metrics.clone(),
            memory,
        ));
        if memory {
            // Weak: the metrics must not keep the windows alive (nor the reverse).
            let weak = Arc::downgrade(&quota);
            metrics.before_scrape(move || {
                if let Some(quota) = weak.upgrade() {
                    quota.publish_all();
                }
            });
        }
        let table = shared_limits
            .is_none()
            .then(|| Arc::new(ClientTable::new(Some(quota.clone()))));
        let published = table.clone();
        let arbiter = Arbiter::new().handle();
        if let Some((path, store)) = state_file.clone() {
            // Written from the registry's thread, off every request's path.
            arbiter.spawn(async move {
                let mut every = actix_rt::time::interval(state_file::SAVE_INTERVAL);
                loop {
                    every.tick().await;
                    state_file::save(&path, &store, false);
                }
            });
        }
        let addr = KeyRegistry::start_in_arbiter(&arbiter, move |_| {
            let registry = KeyRegistry::new(clients, clock).with_quotas(quota);
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
        let registry = Registry {
            admit: addr.clone().recipient(),
            usage: addr.clone().recipient(),
            state_file,
            replace: addr.clone().recipient(),
            bucket_count: addr.recipient(),
            arbiter,
        };
        Ok((registry, table))
    }
}

/// Resource records kept in this process at most: about 100 MB at the worst
/// (docs/operations.md#resource-ownership); the soonest to expire go first.
const MAX_OWNERSHIP_RECORDS: usize = 500_000;

/// Where the service remembers who made each file, cache, batch and
/// interaction: in Redis when the limits are there (every replica agrees),
/// else in this process.
fn ownership(settings: &Settings) -> Ownership {
    let RateLimitBackend::Redis(redis) = &settings.rate_limit_backend else {
        return Ownership::memory(MAX_OWNERSHIP_RECORDS);
    };
    let manager = redis::Client::open(redis.connection.clone())
        .map_err(CheckError::from)
        .and_then(crate::ownership::connect);
    match manager {
        Ok(manager) => Ownership::redis(manager, redis.timeout, MAX_OWNERSHIP_RECORDS),
        Err(error) => {
            log::error!("resource ownership stays in this process: Redis cannot be used ({error})");
            Ownership::memory(MAX_OWNERSHIP_RECORDS)
        }
    }
}

/// Everything that talks to Gemini: the pool (key pool, actors, admission
/// control) and the re-check of refused keys.
struct UpstreamSide {
    pool: UpstreamPool,
    recheck: Addr<KeyRecheck>,
    recheck_arbiter: ArbiterHandle,
}

impl UpstreamSide {
    fn start(settings: &Settings, metrics: &Arc<Metrics>) -> UpstreamSide {
        let context = Arc::new(UpstreamContext {
            base_url: settings.gemini_base_url.as_str().to_owned(),
            keys: KeyPool::new(&settings.gemini_api_keys, metrics.clone()),
            leak_guard: LeakGuard::new(&settings.gemini_api_keys),
            metrics: metrics.clone(),
            retry_budget: Default::default(),
            stream_timeouts: StreamTimeouts {
                gap: settings.upstream_timeout,
                stall: settings.client_stall_timeout,
            },
            egress: settings.upstream_proxy.clone(),
            ownership: ownership(settings),
        });
        let extra_roots = settings
            .upstream_ca
            .as_ref()
            .map_or(&[][..], |ca| ca.roots.as_slice());
        let connect = UpstreamConnect::new(settings.upstream_connect_timeout, extra_roots);
        let (recheck, recheck_arbiter) = recheck::start(
            context.clone(),
            settings.key_recheck_interval,
            connect.clone(),
            settings.default_model.resource(),
        );
        let pool = UpstreamPool::start(
            context,
            settings.upstream_actors.map_or(0, NonZeroUsize::get),
            settings.max_in_flight.get(),
            connect,
        );
        UpstreamSide {
            pool,
            recheck,
            recheck_arbiter,
        }
    }
}

/// What every worker's state is made from.
struct Shared<C: Clock + Clone> {
    metrics: Arc<Metrics>,
    /// The registry actor, for the Redis backend's admissions.
    registry: Recipient<Admit>,
    /// The registry actor, for `GET /usage`.
    usage: Recipient<ReadUsage>,
    /// The published clients, for the in-process backend's per-worker registries.
    table: Published<C>,
    upstream: UpstreamPool,
    readiness: Arc<Readiness>,
    live_sessions: Arc<LiveSessions>,
}

/// The HTTP server on `listener` (with TLS when `tls` holds the certificate);
/// its factory runs once per worker, on that worker's thread, and starts the
/// worker's own actors there.
fn serve<C>(
    settings: &Settings,
    listener: TcpListener,
    tls: Option<Arc<CertResolver>>,
    shared: Shared<C>,
) -> Result<Server, StartupError>
where
    C: Clock + Clone + Send + Sync + Unpin + 'static,
    C::Instant: Unpin,
{
    let limits = RequestLimits {
        max_body_bytes: settings.max_body_bytes.get(),
        max_native_body_bytes: settings.max_native_body_bytes.get(),
        max_upload_bytes: settings.max_upload_bytes,
        public_base_url: settings.public_base_url.as_ref().map(|u| u.as_str().into()),
        max_prompt_chars: settings.max_prompt_chars.get(),
        default_model: settings.default_model.clone(),
        upstream_timeout: settings.upstream_timeout,
        live_idle_timeout: settings.live_idle_timeout,
        client_stall_timeout: settings.client_stall_timeout,
    };
    let options = AppOptions {
        cors: settings.cors_allowed_origins.clone(),
        serve_metrics: settings.metrics_addr.is_none(),
    };
    let drain_secs = settings.drain_timeout.as_secs();
    let server = HttpServer::new(move || {
        let admission = match &shared.table {
            Some(table) => worker::start_for_this_worker(table.clone()),
            None => shared.registry.clone(),
        };
        let state = web::Data::new(AppState {
            limits: limits.clone(),
            metrics: shared.metrics.clone(),
            admission,
            usage: shared.usage.clone(),
            upstream: shared.upstream.for_this_worker(),
            readiness: shared.readiness.clone(),
            live_sessions: shared.live_sessions.clone(),
        });
        create_app(state, &shared.metrics, &options)
    })
    .workers(settings.workers.get())
    // Bursts of new connections wait in the kernel instead of being dropped
    // (the kernel caps this at net.core.somaxconn).
    .backlog(LISTEN_BACKLOG)
    .shutdown_timeout(drain_secs)
    // The service handles the stop signals itself (drain_on_signals): actix
    // would treat SIGINT as a forced stop.
    .disable_signals()
    .client_request_timeout(CLIENT_HEADER_TIMEOUT)
    // A client that closes its side has gone away: drop its handler, which
    // cancels its upstream call, instead of finishing work nobody will read.
    .h1_allow_half_closed(false)
    // So a stream whose client stopped reading can be cut (routes::stream).
    .on_connect(ClientSocket::record(settings.client_stall_timeout));
    let server = match tls {
        // HTTP/2 and HTTP/1.1 by ALPN; no ALPN at all gets HTTP/1.1.
        Some(resolver) => server
            .tls_handshake_timeout(TLS_HANDSHAKE_TIMEOUT)
            .listen_rustls_0_23(listener, crate::tls::server_config(resolver)?)?,
        // Cleartext: HTTP/1.1, and HTTP/2 with prior knowledge on the same
        // port, so an application server can multiplex its calls over one
        // connection.
        None => server.listen_auto_h2c(listener)?,
    };
    Ok(server.run())
}

/// The `/metrics` listener of `METRICS_ADDR`: the exposition and nothing
/// else, so the public port shows no client names, traffic or key states.
fn serve_metrics(
    address: std::net::SocketAddr,
    metrics: &Arc<Metrics>,
    upstream: &Arc<UpstreamContext>,
) -> Result<(u16, Server), StartupError> {
    let listener = TcpListener::bind(address).map_err(|source| StartupError::Bind {
        address: address.to_string(),
        source,
    })?;
    let port = listener.local_addr()?.port();
    let source = web::Data::new((metrics.clone(), upstream.clone()));
    let server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(source.clone())
            .route(
                "/metrics",
                web::get().to(
                    |source: web::Data<(Arc<Metrics>, Arc<UpstreamContext>)>| async move {
                        crate::routes::health::exposition(&source.0, &source.1.keys)
                    },
                ),
            )
            .default_service(web::to(|| async {
                actix_web::HttpResponse::NotFound().finish()
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    log::info!("metrics on http://{address} (port {port}), not on the public port");
    Ok((port, server))
}

/// The first `SIGTERM` or `SIGINT` turns `/ready` to 503 and drains: no new
/// connections, in-flight requests and streams get up to `drain` to finish.
/// A second signal stops at once.
async fn drain_on_signals(
    servers: Vec<ServerHandle>,
    readiness: Arc<Readiness>,
    live_sessions: Arc<LiveSessions>,
    drain: Duration,
    stop_now: Arc<tokio::sync::Notify>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot listen for SIGTERM/SIGINT; stop signals will end the process at once");
        return;
    };
    let first = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    log::info!(
        "{first}: draining for up to {} s (in-flight requests and streams finish; a second signal stops at once)",
        drain.as_secs()
    );
    readiness.set(Phase::Draining);
    // Live sessions never end by themselves: they get a going-away close frame.
    live_sessions.close_all();
    let graceful = futures_util::future::join_all(servers.iter().map(|s| s.stop(true)));
    let second = tokio::select! {
        _ = graceful => return,
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    log::warn!("{second} again: stopping at once, in-flight requests are cut");
    stop_now.notify_one();
}

/// A handle on a running service, cheap to clone.
#[derive(Clone)]
pub struct AppControl {
    reloader: Arc<Reloader>,
    bucket_count: Recipient<BucketCount>,
    recheck: Addr<KeyRecheck>,
    upstream: UpstreamPool,
    readiness: Arc<Readiness>,
    live_sessions: Arc<LiveSessions>,
}

impl AppControl {
    /// What the first stop signal does to `/ready`, without stopping: for an
    /// embedder that drains by other means, and for tests.
    pub fn set_draining(&self) {
        self.readiness.set(Phase::Draining);
        self.live_sessions.close_all();
    }

    /// Live API sessions open now.
    pub fn live_sessions(&self) -> usize {
        self.live_sessions.count()
    }

    /// Reloads the keys file (and the TLS certificate, when TLS is on) now, as
    /// SIGHUP does. Answers the keys file's outcome; a certificate that fails
    /// to load is logged and counted, and the one in force stays.
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
