"""OpenTelemetry: Palisade exports one span per request over OTLP/HTTP to a collector, and
the span continues the caller's W3C `traceparent`. The collector here is a real OTLP/HTTP
endpoint written for the test (no collector binary is packaged in the registries we may
use); it decodes the protobuf bodies with the official `opentelemetry-proto` messages."""

import http.server
import json
import threading
import time
import urllib.request

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import ROOT, Server, build

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


class Collector(http.server.ThreadingHTTPServer):
    """Receives `POST /v1/traces` (protobuf) and keeps every span."""

    def __init__(self):
        self.spans = []
        self.resources = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)

    def received(self):
        with self.lock:
            return list(self.spans)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
        if ok:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with self.server.lock:
                for resource_spans in request.resource_spans:
                    self.server.resources.append(resource_spans.resource)
                    for scope_spans in resource_spans.scope_spans:
                        self.server.spans.extend(scope_spans.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    collector = Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    home = tmp_path_factory.mktemp("trace-home")
    build(home, ROOT / "examples" / "iris")
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    server = Server(home, ["--otlp-endpoint", endpoint])
    yield server, collector
    server.stop()
    collector.shutdown()


def infer(server, headers):
    body = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
    req = urllib.request.Request(server.base + "/v2/models/iris/infer", data=body.encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers


def test_spans_reach_the_collector_in_the_callers_trace(traced):
    server, collector = traced
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
    headers = infer(server, {"Authorization": f"Bearer {server.token}", "traceparent": traceparent})
    # The response names the server's span in the caller's trace.
    returned = headers["traceparent"].split("-")
    assert returned[1] == TRACE_ID and returned[2] != PARENT_SPAN
    request_id = headers["x-request-id"]

    deadline = time.monotonic() + 20  # the batch exporter flushes every few seconds
    span = None
    while span is None and time.monotonic() < deadline:
        for s in collector.received():
            if s.trace_id.hex() == TRACE_ID and s.name == "request":
                span = s
        time.sleep(0.2)
    assert span is not None, f"no request span in trace {TRACE_ID}: {[s.name for s in collector.received()]}"
    assert span.parent_span_id.hex() == PARENT_SPAN, "the span's parent is the caller's span"
    assert span.span_id.hex() == returned[2], "the span is the one named in the response"
    attributes = {a.key: a.value.string_value for a in span.attributes}
    assert attributes.get("request_id") == request_id
    assert span.end_time_unix_nano > span.start_time_unix_nano
    services = [a.value.string_value for r in collector.resources for a in r.attributes if a.key == "service.name"]
    assert "palisade" in services


def test_a_request_without_traceparent_starts_a_trace(traced):
    server, collector = traced
    headers = infer(server, {"Authorization": f"Bearer {server.token}"})
    trace_id = headers["traceparent"].split("-")[1]
    assert trace_id != TRACE_ID and len(trace_id) == 32
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(s.trace_id.hex() == trace_id for s in collector.received()):
            return
        time.sleep(0.2)
    pytest.fail(f"no span exported for trace {trace_id}")
