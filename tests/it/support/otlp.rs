//! [`Collector`]: a fake OTLP/HTTP collector. It answers every
//! `POST /v1/traces` with 200 and decodes its protobuf body with the
//! OpenTelemetry project's own types (`opentelemetry-proto`), independently
//! of the daemon's exporter, into [`ReceivedSpan`]s.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

use super::receiver::{Answer, Receiver};

/// One span as the collector got it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    /// Empty for a root span.
    pub parent_span_id: Vec<u8>,
    /// Every attribute, its value as text.
    pub attributes: HashMap<String, String>,
    /// The resource's `service.name`.
    pub service: String,
}

impl ReceivedSpan {
    /// The attribute `key` as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A running collector; stops when dropped.
pub struct Collector(Receiver);

impl Collector {
    /// Binds `127.0.0.1:0`.
    pub async fn start() -> Collector {
        Collector(
            Receiver::start(|_| Answer::ok().header("content-type", "application/x-protobuf"))
                .await,
        )
    }

    /// The base URL the daemon is given (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        self.0.url("").trim_end_matches('/').to_owned()
    }

    /// How many requests of any kind it got.
    pub fn requests(&self) -> usize {
        self.0.deliveries().len()
    }

    /// Every span of every `POST /v1/traces`, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for d in self.0.deliveries_to("/v1/traces") {
            let request = ExportTraceServiceRequest::decode(d.body.as_slice())
                .expect("an OTLP protobuf traces request");
            for rs in request.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                    .unwrap_or_default();
                for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                    out.push(ReceivedSpan {
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| {
                                let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                                (kv.key.clone(), text(v))
                            })
                            .collect(),
                        service: service.clone(),
                    });
                }
            }
        }
        out
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
