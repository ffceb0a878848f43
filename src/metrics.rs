//! The Prometheus registry `/metrics` serves: actix-web-prom's two HTTP metrics
//! plus the service's own (docs/metrics.md).
//!
//! Label values come only from route patterns, config names, fixed code lists and
//! model ids Gemini has answered successfully (at most [`MAX_MODEL_LABELS`]; any
//! other id is `other`), so no request can create unbounded series.
//!
//! Every family is always in the exposition, even before its first
//! sample: the Prometheus client drops a family without series, so the families
//! still empty are written as their `# HELP` and `# TYPE` lines alone. Dashboards
//! and alerts can then tell "nothing happened yet" from "not exported".

use crate::upstream::stream_reader::Tokens;
use actix_web_prom::{ActixMetricsConfiguration, PrometheusMetrics, PrometheusMetricsBuilder};
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

/// How many distinct model ids get their own label value.
pub const MAX_MODEL_LABELS: usize = 100;
/// The label for every model id without its own.
pub const OTHER_MODEL: &str = "other";
/// Latency buckets, seconds: LLM calls take from milliseconds to minutes.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

pub struct Metrics {
    registry: Registry,
    http: PrometheusMetrics,
    pub client_requests: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub tokens: IntCounterVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_retries: IntCounterVec,
    pub stream_first_byte: HistogramVec,
    pub in_flight: IntGauge,
    pub key_available: IntGaugeVec,
    pub key_rests: IntCounterVec,
    pub key_resting_models: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    /// 1 while the shared rate-limit backend answers (only `redis` has series).
    pub rate_limit_backend_up: IntGaugeVec,
    /// What each client may still use of each quota window it has.
    pub client_quota_remaining: IntGaugeVec,
    /// Live API sessions open now, by client.
    pub live_sessions: IntGaugeVec,
    models: RwLock<HashSet<String>>,
    /// Every family the registry holds, to write the empty ones too.
    families: Vec<Family>,
    /// Run before each scrape, so gauges that change with time alone (a quota
    /// window that frees up while its client is idle) are current.
    before_scrape: RwLock<Vec<Box<dyn Fn() + Send + Sync>>>,
}

/// A family's header lines, written when it has no series yet.
struct Family {
    name: String,
    help: String,
    kind: &'static str,
}

impl Family {
    fn of(collector: &impl Collector, kind: &'static str) -> Vec<Family> {
        collector
            .desc()
            .into_iter()
            .map(|desc| Family {
                name: desc.fq_name.clone(),
                help: desc.help.clone(),
                kind,
            })
            .collect()
    }
}

/// Building the registry fails only on a programming error (a duplicate or
/// malformed metric name), which start-up reports.
pub type MetricsError = prometheus::Error;

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        // No `.endpoint(..)`: `/metrics` is a route of ours that writes `exposition()`.
        let http = PrometheusMetricsBuilder::new("api")
            .registry(registry.clone())
            .mask_unmatched_patterns("UNMATCHED")
            .buckets(BUCKETS)
            .metrics_configuration(
                ActixMetricsConfiguration::default()
                    .http_requests_total_name("requests_total")
                    .http_requests_duration_seconds_name("request_duration_seconds"),
            )
            .build()
            .map_err(|e| prometheus::Error::Msg(e.to_string()))?;

        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, MetricsError> {
                let metric = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };

        let mut metrics = Metrics {
            client_requests: counter(
                "gemini_proxy_client_requests_total",
                "Requests by client name and outcome code (OK or an error code)",
                &["client", "code"],
            )?,
            rate_limited: counter(
                "gemini_proxy_rate_limited_total",
                "Requests refused by the client's own rate limit",
                &["client"],
            )?,
            tokens: counter(
                "gemini_proxy_tokens_total",
                "Gemini tokens used, by client, model and kind (prompt, response, thoughts)",
                &["client", "model", "kind"],
            )?,
            upstream_requests: counter(
                "gemini_proxy_upstream_requests_total",
                "Calls to Gemini (one per attempt) by model and outcome",
                &["model", "outcome"],
            )?,
            upstream_duration: histogram(
                "gemini_proxy_upstream_duration_seconds",
                "Duration of each call to Gemini",
                &["model"],
            )?,
            upstream_retries: counter(
                "gemini_proxy_upstream_retries_total",
                "Calls to Gemini made again, by the outcome that caused it",
                &["reason"],
            )?,
            stream_first_byte: histogram(
                "gemini_proxy_stream_first_byte_seconds",
                "Time to the first byte of a streamed answer",
                &["model"],
            )?,
            in_flight: {
                let gauge = IntGauge::new(
                    "gemini_proxy_in_flight_requests",
                    "Requests being handled right now",
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            key_available: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "gemini_proxy_upstream_key_available",
                        "1 when the server key at this index is in rotation, else 0",
                    ),
                    &["key"],
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            key_rests: counter(
                "gemini_proxy_upstream_key_rests_total",
                "Times a server key was rested for a model after a Gemini quota answer, by key index and quota window (minute or day)",
                &["key", "scope"],
            )?,
            key_resting_models: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "gemini_proxy_upstream_key_resting_models",
                        "Models the server key at this index rests for now",
                    ),
                    &["key"],
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            config_reloads: counter(
                "gemini_proxy_config_reloads_total",
                "Keys-file reloads by result",
                &["result"],
            )?,
            live_sessions: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "gemini_proxy_live_sessions",
                        "Live API (WebSocket) sessions open now, by client",
                    ),
                    &["client"],
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            client_quota_remaining: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "gemini_proxy_client_quota_remaining",
                        "What a client may still use of a quota window (tokens or requests), by client and limit",
                    ),
                    &["client", "limit"],
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            rate_limit_backend_up: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "gemini_proxy_rate_limit_backend_up",
                        "1 while the shared rate-limit backend answers, 0 while this replica falls back to its in-process limits",
                    ),
                    &["backend"],
                )?;
                registry.register(Box::new(gauge.clone()))?;
                gauge
            },
            models: RwLock::new(HashSet::new()),
            families: Vec::new(),
            before_scrape: RwLock::new(Vec::new()),
            registry,
            http,
        };
        let build_info = IntGaugeVec::new(
            Opts::new("gemini_proxy_build_info", "The running version; always 1"),
            &["version"],
        )?;
        metrics.registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["success", "failure"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        metrics.families = metrics.family_list(&build_info);
        Ok(metrics)
    }

    /// Every family of the registry, in the order they were declared.
    fn family_list(&self, build_info: &IntGaugeVec) -> Vec<Family> {
        // actix-web-prom's two families; the help texts are its own.
        let mut families = vec![
            Family {
                name: "api_requests_total".into(),
                help: "Total number of HTTP requests".into(),
                kind: "counter",
            },
            Family {
                name: "api_request_duration_seconds".into(),
                help: "HTTP request duration in seconds for all requests".into(),
                kind: "histogram",
            },
        ];
        for counter in [
            &self.client_requests,
            &self.rate_limited,
            &self.tokens,
            &self.upstream_requests,
            &self.upstream_retries,
            &self.key_rests,
            &self.config_reloads,
        ] {
            families.extend(Family::of(counter, "counter"));
        }
        for histogram in [&self.upstream_duration, &self.stream_first_byte] {
            families.extend(Family::of(histogram, "histogram"));
        }
        families.extend(Family::of(&self.in_flight, "gauge"));
        families.extend(Family::of(&self.key_available, "gauge"));
        families.extend(Family::of(&self.key_resting_models, "gauge"));
        families.extend(Family::of(&self.rate_limit_backend_up, "gauge"));
        families.extend(Family::of(&self.client_quota_remaining, "gauge"));
        families.extend(Family::of(&self.live_sessions, "gauge"));
        families.extend(Family::of(build_info, "gauge"));
        families
    }

    /// Runs `hook` before every scrape from now on.
    pub fn before_scrape(&self, hook: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut hooks) = self.before_scrape.write() {
            hooks.push(Box::new(hook));
        }
    }

    /// The Prometheus text exposition `/metrics` serves: the registry's series,
    /// then the header lines of every family that has none yet.
    pub fn exposition(&self) -> Result<String, MetricsError> {
        if let Ok(hooks) = self.before_scrape.read() {
            for hook in hooks.iter() {
                hook();
            }
        }
        let gathered = self.registry.gather();
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&gathered, &mut buffer)?;
        let mut text = String::from_utf8_lossy(&buffer).into_owned();
        for family in &self.families {
            if !gathered.iter().any(|f| f.name() == family.name) {
                text.push_str(&format!(
                    "# HELP {} {}\n# TYPE {} {}\n",
                    family.name, family.help, family.name, family.kind
                ));
            }
        }
        Ok(text)
    }

    /// The middleware that records the HTTP metrics (`/metrics` is served by
    /// `routes::health::metrics`, from [`Metrics::exposition`]).
    pub fn http_middleware(&self) -> PrometheusMetrics {
        self.http.clone()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The label for a model id: itself once Gemini has answered it successfully
    /// (while fewer than [`MAX_MODEL_LABELS`] are known), else `other`.
    pub fn model_label(&self, model: &str) -> String {
        let known = self
            .models
            .read()
            .map(|m| m.contains(model))
            .unwrap_or(false);
        if known {
            model.to_owned()
        } else {
            OTHER_MODEL.to_owned()
        }
    }

    /// Records that Gemini answered this model successfully, giving it a label
    /// of its own if there is room; returns the label to use.
    pub fn model_succeeded(&self, model: &str) -> String {
        if let Ok(models) = self.models.read() {
            if models.contains(model) {
                return model.to_owned();
            }
            if models.len() >= MAX_MODEL_LABELS {
                return OTHER_MODEL.to_owned();
            }
        }
        match self.models.write() {
            Ok(mut models) if models.len() < MAX_MODEL_LABELS || models.contains(model) => {
                models.insert(model.to_owned());
                model.to_owned()
            }
            _ => OTHER_MODEL.to_owned(),
        }
    }

    /// Counts one call to Gemini and its duration.
    pub fn upstream_call(&self, model_label: &str, outcome: &str, duration: Duration) {
        self.upstream_requests
            .with_label_values(&[model_label, outcome])
            .inc();
        self.upstream_duration
            .with_label_values(&[model_label])
            .observe(duration.as_secs_f64());
    }

    /// Counts tokens a client used.
    pub fn count_tokens(&self, client: &str, model_label: &str, tokens: Tokens) {
        for (kind, count) in [
            ("prompt", tokens.prompt),
            ("response", tokens.response),
            ("thoughts", tokens.thoughts),
        ] {
            if count > 0 {
                self.tokens
                    .with_label_values(&[client, model_label, kind])
                    .inc_by(count);
            }
        }
    }
}
