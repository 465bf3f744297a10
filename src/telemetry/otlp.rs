//! The OTLP exporter of `[telemetry]`: spans of the [`TARGET`] target, sampled
//! by trace (a share of the events, each trace kept whole), batched on the
//! SDK's own thread and POSTed as protobuf to the collector's
//! `/v1/traces`. Built only when `otlp_endpoint` is set; [`Tracing::shutdown`]
//! sends what is left when the daemon stops.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{Layer, Registry};

use super::spans::TARGET;
use crate::config::TelemetryConfig;

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter for {endpoint}: {source}")]
pub(crate) struct TracingError {
    endpoint: String,
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The running exporter.
pub(crate) struct Tracing(SdkTracerProvider);

impl Tracing {
    /// Sends the spans still waiting and stops the exporter's thread.
    pub(crate) fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!(error = %e, "Cannot send the last spans to the OTLP collector");
        }
    }
}

/// The exporter and the layer that feeds it, when `cfg` names an endpoint.
///
/// # Errors
///
/// A [`TracingError`] when the exporter cannot be built (its HTTP client).
pub(crate) fn layer(
    cfg: &TelemetryConfig,
) -> Result<Option<(Tracing, impl Layer<Registry> + Send + Sync)>, TracingError> {
    let Some(endpoint) = &cfg.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.as_str())
        .build()
        .map_err(|source| TracingError {
            endpoint: endpoint.to_string(),
            source,
        })?;
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sampling_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target(TARGET, LevelFilter::TRACE));
    Ok(Some((Tracing(provider), layer)))
}
