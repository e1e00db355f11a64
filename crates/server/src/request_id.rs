//! Request ids and trace context: one per data-plane request, given by the context layer
//! ([`crate::context::establish`]), returned as `x-request-id` and attached to every log
//! line of the request.

/// The response header carrying the request id.
pub const HEADER: &str = "x-request-id";

/// The id of the request being handled, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The W3C trace context of a request: the caller's trace id (from a valid `traceparent`)
/// or a new one, and this server's span id within it.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits: the server's span.
    pub span_id: String,
    /// Whether the caller's trace is sampled.
    pub sampled: bool,
}

impl TraceContext {
    /// Continues a valid `traceparent` (version 00), or starts a new trace.
    pub fn from_header(header: Option<&str>) -> TraceContext {
        let span_id = random_hex(8);
        if let Some((trace_id, sampled)) = header.and_then(parse_traceparent) {
            return TraceContext { trace_id, span_id, sampled };
        }
        TraceContext { trace_id: random_hex(16), span_id, sampled: true }
    }

    /// The `traceparent` value naming this server's span.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, if self.sampled { "01" } else { "00" })
    }
}

/// When an OpenTelemetry exporter is installed, the request span continues the caller's
/// trace (`traceparent`) and its ids are the ones reported; otherwise `None`.
pub(crate) fn with_exporter(span: &tracing::Span, traceparent: Option<&str>) -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if let Some(header) = traceparent.filter(|h| parse_traceparent(h).is_some()) {
        let carrier = std::collections::HashMap::from([("traceparent".to_owned(), header.to_owned())]);
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| TraceContext {
        trace_id: span_context.trace_id().to_string(),
        span_id: span_context.span_id().to_string(),
        sampled: span_context.is_sampled(),
    })
}

/// `bytes` random bytes as lower-case hex.
fn random_hex(bytes: usize) -> String {
    let mut hex = uuid::Uuid::new_v4().simple().to_string();
    if bytes * 2 < hex.len() {
        hex.truncate(bytes * 2);
    }
    hex
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; all-zero ids are invalid.
fn parse_traceparent(value: &str) -> Option<(String, bool)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if version != "00"
        || parts.next().is_some()
        || !hex(trace_id, 32)
        || !hex(parent_id, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some((trace_id.to_owned(), sampled))
}

tokio::task_local! {
    /// The request being handled by this task, for calls made on its behalf (upstream servers).
    pub(crate) static CURRENT: Current;
}

/// The id and trace context of the request a task is handling.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The request id.
    pub id: RequestId,
    /// The trace context; its `traceparent` names this server's span.
    pub trace: TraceContext,
}

impl Current {
    /// The request the current task handles, when it runs inside [`assign`].
    pub(crate) fn get() -> Option<Current> {
        CURRENT.try_with(Clone::clone).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_continued_when_valid() {
        let t = TraceContext::from_header(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.sampled);
        assert_eq!(t.span_id.len(), 16);
        assert!(t.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert_ne!(
                TraceContext::from_header(Some(bad)).trace_id,
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{bad}"
            );
        }
        assert_eq!(TraceContext::from_header(None).trace_id.len(), 32);
    }
}
