//! Prometheus metrics on `metricsPort` (text format): requests by command
//! and result code with latency, delegate plugin calls, wasm phases, API
//! requests (and module reads that joined one in flight), requests in
//! flight and waiting, requests past their deadline (answered, and still
//! running), watch events and cache sizes. Plugin, wasm and API figures
//! come from the debug events the shared code already emits (`plugin
//! call`, `wasm call`, `API request`, `joined a request in flight`), read
//! by a tracing layer, so the CNI code path carries no metrics code.

use std::sync::atomic::AtomicI64;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub command: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub verb: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub kind: String,
}

/// The watch caches' sizes, read at each scrape.
type Sizes = Box<dyn Fn() -> Vec<(&'static str, i64)> + Send + Sync>;

fn seconds() -> Histogram {
    // 100 µs to ~26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<CommandLabels, Histogram, fn() -> Histogram>,
    pub plugin_seconds: Family<PluginLabels, Histogram, fn() -> Histogram>,
    pub wasm_seconds: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    pub api_requests: Family<ApiLabels, Counter>,
    pub api_seconds: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub api_joined: Counter,
    pub in_flight: Gauge<i64, AtomicI64>,
    pub waiting: Gauge<i64, AtomicI64>,
    pub timed_out: Family<CommandLabels, Counter>,
    pub abandoned: Gauge<i64, AtomicI64>,
    pub watch_events: Family<CacheLabels, Counter>,
    cache_objects: Family<CacheLabels, Gauge<i64, AtomicI64>>,
    sizes: Mutex<Option<Sizes>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("multus"),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds),
            plugin_seconds: Family::new_with_constructor(seconds),
            wasm_seconds: Family::new_with_constructor(seconds),
            api_requests: Family::default(),
            api_seconds: Family::new_with_constructor(seconds),
            api_joined: Counter::default(),
            in_flight: Gauge::default(),
            waiting: Gauge::default(),
            timed_out: Family::default(),
            abandoned: Gauge::default(),
            watch_events: Family::default(),
            cache_objects: Family::default(),
            sizes: Mutex::new(None),
        };
        let r = &mut m.registry;
        r.register(
            "server_requests",
            "CNI requests by command and result code (0 = success)",
            m.requests.clone(),
        );
        r.register(
            "server_request_seconds",
            "CNI request latency by command",
            m.request_seconds.clone(),
        );
        r.register(
            "delegate_plugin_seconds",
            "delegate plugin calls by plugin type and command",
            m.plugin_seconds.clone(),
        );
        r.register(
            "wasm_phase_seconds",
            "wasm calls: load, instantiate and call phases",
            m.wasm_seconds.clone(),
        );
        r.register(
            "api_requests",
            "Kubernetes API requests by verb and outcome",
            m.api_requests.clone(),
        );
        r.register(
            "api_request_seconds",
            "Kubernetes API request latency by verb and outcome",
            m.api_seconds.clone(),
        );
        r.register(
            "api_requests_joined",
            "module reads of the watch cache answered by an identical read in flight, not sent",
            m.api_joined.clone(),
        );
        r.register(
            "requests_in_flight",
            "CNI requests running",
            m.in_flight.clone(),
        );
        r.register(
            "requests_waiting",
            "CNI requests waiting for their turn (connectionLimit)",
            m.waiting.clone(),
        );
        r.register(
            "requests_timed_out",
            "CNI requests answered with an error at requestTimeoutMs, by command",
            m.timed_out.clone(),
        );
        r.register(
            "requests_abandoned",
            "CNI requests answered at requestTimeoutMs whose work still runs",
            m.abandoned.clone(),
        );
        r.register(
            "watch_events",
            "watch events received (lists, changes, relists) by kind",
            m.watch_events.clone(),
        );
        r.register(
            "cache_objects",
            "objects in the watch caches by kind",
            m.cache_objects.clone(),
        );
        m
    }
}

impl Metrics {
    /// Reads the cache sizes from `sizes` at each scrape.
    pub fn cache_objects(
        &self,
        sizes: impl Fn() -> Vec<(&'static str, i64)> + Send + Sync + 'static,
    ) {
        *self.sizes.lock().unwrap() = Some(Box::new(sizes));
    }

    pub fn render(&self) -> String {
        if let Some(sizes) = self.sizes.lock().unwrap().as_ref() {
            for (kind, n) in sizes() {
                self.cache_objects
                    .get_or_create(&CacheLabels { kind: kind.into() })
                    .set(n);
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The fields of one event this layer reads.
#[derive(Default)]
struct Fields {
    message: String,
    plugin: String,
    command: String,
    module: String,
    call: String,
    duration_us: Option<u64>,
    duration_ms: Option<f64>,
    load_us: Option<u64>,
    instantiate_us: Option<u64>,
    call_us: Option<u64>,
    ok: Option<bool>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "command" => self.command = text,
            "duration_ms" => self.duration_ms = text.trim_matches('"').parse().ok(),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = value.to_string(),
            "module" => self.module = value.to_string(),
            "call" => self.call = value.to_string(),
            "command" => self.command = value.to_string(),
            "duration_ms" => self.duration_ms = value.parse().ok(),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "duration_us" => self.duration_us = Some(value),
            "load_us" => self.load_us = Some(value),
            "instantiate_us" => self.instantiate_us = Some(value),
            "call_us" => self.call_us = Some(value),
            _ => {}
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "ok" {
            self.ok = Some(value);
        }
    }
}

/// Reads the shared code's timing events into `Metrics`.
pub struct MetricsLayer(pub std::sync::Arc<Metrics>);

impl<S: tracing::Subscriber> Layer<S> for MetricsLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let m = &self.0;
        let secs = |us: u64| us as f64 / 1e6;
        match f.message.as_str() {
            "plugin call" => {
                if let Some(us) = f.duration_us {
                    m.plugin_seconds
                        .get_or_create(&PluginLabels {
                            plugin: f.plugin,
                            command: f.command,
                        })
                        .observe(secs(us));
                }
            }
            "wasm call" | "wasm mapper call" => {
                for (phase, us) in [
                    ("load", f.load_us),
                    ("instantiate", f.instantiate_us),
                    ("call", f.call_us),
                ] {
                    if let Some(us) = us {
                        m.wasm_seconds
                            .get_or_create(&PhaseLabels {
                                phase: phase.into(),
                            })
                            .observe(secs(us));
                    }
                }
            }
            "API request" => {
                let labels = ApiLabels {
                    verb: f.call.split(' ').next().unwrap_or_default().to_string(),
                    outcome: if f.ok == Some(true) { "ok" } else { "error" }.into(),
                };
                m.api_requests.get_or_create(&labels).inc();
                if let Some(ms) = f.duration_ms {
                    m.api_seconds.get_or_create(&labels).observe(ms / 1e3);
                }
            }
            "joined a request in flight" => {
                m.api_joined.inc();
            }
            _ => {}
        }
    }
}
