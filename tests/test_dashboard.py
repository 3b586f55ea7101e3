"""The Grafana dashboard shipped with the chart names only metrics that really exist.

``helm/radmesh/files/grafana-dashboard.json`` is parsed, every PromQL expression in it
(panel targets and template-variable queries) is reduced to the metric names it
selects, and each name is looked up in what real servers expose:

- radmesh's own (``radmesh_*``): a real ``radmesh serve assistant`` on loopback, one RPC
  (GetSession of an unknown session: NOT_FOUND, so the request counter, the latency
  histogram and the in-flight gauge all get a sample), then its metrics port scraped;
- Triton's (``nv_*``): the fixed list below, which is itself checked against the
  ``/metrics`` of a real tritonserver (the nvidia-pytriton wheel's, Triton 2.51) serving
  a one-line Python-backend model after one inference; about 5-10 s here. The GPU
  metrics (``nv_gpu_*``, ``nv_energy_consumption``) come from DCGM and are absent on a
  CPU-only host, so for them the list is Triton's documentation
  (triton-inference-server/server, docs/user_guide/metrics.md, "GPU Metrics") only.

Label matchers are checked too: a label in ``metric{label="..."}`` must be on that
metric's samples or be one the Prometheus scrape adds (namespace, pod, ...).
"""

from __future__ import annotations

import copy
import json
import re
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from conftest import free_port, start_service

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "helm" / "radmesh" / "files" / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"     # its ```promql blocks (alerts, the adapter rule) too
VALUES = ROOT / "helm" / "radmesh" / "values.yaml"  # ... and the chart values it names

# Triton's metrics the dashboard may use. "server": seen on the real 2.51 /metrics in
# this test; "docs": Triton's metrics.md only (DCGM GPU metrics, not exported without a GPU).
TRITON_METRICS = {
    "nv_inference_request_success": "server",
    "nv_inference_request_failure": "server",
    "nv_inference_count": "server",
    "nv_inference_exec_count": "server",
    "nv_inference_request_duration_us": "server",
    "nv_inference_queue_duration_us": "server",
    "nv_inference_compute_input_duration_us": "server",
    "nv_inference_compute_infer_duration_us": "server",
    "nv_inference_compute_output_duration_us": "server",
    "nv_inference_pending_request_count": "server",
    "nv_cpu_utilization": "server",
    "nv_cpu_memory_total_bytes": "server",
    "nv_cpu_memory_used_bytes": "server",
    "nv_gpu_utilization": "docs",
    "nv_gpu_memory_total_bytes": "docs",
    "nv_gpu_memory_used_bytes": "docs",
    "nv_gpu_power_usage": "docs",
    "nv_gpu_power_limit": "docs",
    "nv_energy_consumption": "docs",
}
# Triton documents gpu_uuid on every GPU metric (and on per-model metrics on a GPU).
TRITON_GPU_LABELS = {"gpu_uuid"}
# Labels Prometheus attaches to every scraped series in Kubernetes (ServiceMonitor or
# pod annotations), so a dashboard may match on them though no exporter sets them.
TARGET_LABELS = {"namespace", "pod", "service", "job", "instance", "container", "endpoint"}

AGGREGATIONS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
                "count_values", "group", "limitk", "limit_ratio"}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar",
    "histogram_sum", "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln",
    "log2", "log10", "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time",
    "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time",
    "last_over_time", "present_over_time",
}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}   # followed by (label, ...)
OPERATOR_WORDS = {"and", "or", "unless", "bool"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_TOKEN = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|[A-Za-z_:][A-Za-z0-9_:]*|\S")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    Strips strings, label matchers, ranges and subqueries, ``offset``/``@`` modifiers and
    Grafana variables; tokenises the rest; drops numbers, operators, the label lists of
    ``by``/``without``/``on``/``ignoring``/``group_*`` and every name followed by ``(``,
    which must then be a PromQL function or aggregation (a misspelt one is an error, not
    a metric).
    """
    if "__name__" in expr:
        raise ValueError(f"selects by __name__, which this check cannot follow: {expr}")
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)                       # label matchers
    s = re.sub(r"\[[^\[\]]*\]", " ", s)                     # ranges, subqueries ($__rate_interval too)
    s = re.sub(r"\boffset\s+-?[0-9A-Za-z_$]+", " ", s)      # offset 5m
    s = re.sub(r"@\s*(?:start\(\)|end\(\)|[0-9.]+)", " ", s)
    s = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_]\w*", " ", s)       # Grafana variables outside brackets
    tokens = _TOKEN.findall(s)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if not _NAME.fullmatch(tok):
            i += 1
            continue
        if tok in LABEL_LISTS:
            if nxt == "(":
                depth, i = 0, i + 1
                while i < len(tokens):           # skip to the matching ")"
                    depth += {"(": 1, ")": -1}.get(tokens[i], 0)
                    if depth == 0:
                        break
                    i += 1
            i += 1
            continue
        if tok in OPERATOR_WORDS:
            i += 1
            continue
        if nxt == "(":
            if tok not in FUNCTIONS | AGGREGATIONS:
                raise ValueError(f"{tok}() is not a PromQL function or aggregation: {expr}")
            i += 1
            continue
        if tok in AGGREGATIONS and nxt in ("by", "without"):
            i += 1
            continue
        names.add(tok)
        i += 1
    return names


def grafana_query_metrics(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (label_values, query_result or PromQL)."""
    q = query.strip()
    m = re.fullmatch(r"label_values\((.*)\)", q, re.S)
    if m:
        args = m.group(1).rsplit(",", 1)
        return metric_names(args[0]) if len(args) == 2 else set()
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    if m:
        return metric_names(m.group(1))
    if q.startswith(("label_names(", "metrics(")):
        raise ValueError(f"variable query {q!r} lists names instead of using one")
    return metric_names(q)


def _panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))   # collapsed rows nest their panels


def expressions(dashboard: dict) -> list[tuple[str, str, bool]]:
    """(where, query, is_variable) for every panel target and every query variable."""
    out = []
    for p in _panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((f"panel {p.get('title')!r} target {t.get('refId')}", t["expr"], False))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
            out.append((f"variable {v['name']}", q, True))
    return out


def used_metrics(dashboard: dict) -> set[str]:
    names: set[str] = set()
    for _, q, is_variable in expressions(dashboard):
        names |= grafana_query_metrics(q) if is_variable else metric_names(q)
    return names


def doc_queries(markdown: str) -> list[tuple[str, str]]:
    """(where, PromQL) for every expression in the ```promql blocks of a Markdown page.

    One expression per paragraph of a block (blank lines separate them); ``#`` lines are comments.
    """
    out = []
    for n, block in enumerate(re.findall(r"```promql\n(.*?)```", markdown, re.S), 1):
        lines = [ln.strip() for ln in block.splitlines() if not ln.strip().startswith("#")]
        for expr in " ".join(ln if ln else "\n" for ln in lines).split("\n"):
            if expr.strip():
                out.append((f"promql block {n}", expr.strip()))
    return out


def parse_exposition(text: str) -> dict[str, set[str]]:
    """Prometheus text exposition → {series name: label names seen on it}.

    A family declared by ``# TYPE`` but without samples yet (a labelled counter nobody
    incremented) still counts, under the names Prometheus will store for its type.
    """
    names: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
            for suffix in suffixes.get(kind.strip(), ("",)):
                names.setdefault(name + suffix, set())
        elif line and not line.startswith("#"):
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s", line)
            assert m, f"not an exposition line: {line!r}"
            labels = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(3) or ""))
            names.setdefault(m.group(1), set()).update(labels)
    return names


def problems(dashboard: dict, exported: dict[str, set[str]]) -> list[str]:
    """What in the dashboard is not exported: unknown metric names, unknown matcher labels."""
    found = []
    for where, expr, is_variable in expressions(dashboard):
        names = grafana_query_metrics(expr) if is_variable else metric_names(expr)
        for name in sorted(names):
            if name not in exported:
                found.append(f"{where}: {name} is not exported")
        for name, matchers in _SELECTOR.findall(_STRING.sub('""', expr)):
            known = exported.get(name)
            if not known:       # not exported (reported above), or no sample yet to read labels from
                continue
            allowed = known | TARGET_LABELS | (TRITON_GPU_LABELS if name.startswith("nv_") else set())
            for label in _MATCHER.findall(matchers):
                if label not in allowed:
                    found.append(f"{where}: {name} has no label {label!r} (it has {sorted(known)})")
    return found


# ---- the extractor ------------------------------------------------------------------------------

def test_extractor_strips_functions_matchers_ranges_numbers_and_label_lists():
    e = ('histogram_quantile(0.95, sum by (le, service, method) '
         '(rate(radmesh_grpc_request_duration_seconds_bucket{namespace=~"$namespace", code!="OK"}[$__rate_interval])))')
    assert metric_names(e) == {"radmesh_grpc_request_duration_seconds_bucket"}
    e = ('sum by (model) (rate(nv_inference_queue_duration_us{model=~"$model"}[5m])) / 1000 '
         '/ sum without (version) (rate(nv_inference_request_success[5m] offset 1h)) > bool 1e3')
    assert metric_names(e) == {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    assert metric_names('a_metric * on (pod) group_left (node) b_info or vector(0)') == {"a_metric", "b_info"}
    assert metric_names("max_over_time(up_ish[1h:5m]) and count(x) by (job)") == {"up_ish", "x"}
    assert metric_names('label_replace(m{a="}{"}, "dst", "$1", "src", "(.*)")') == {"m"}
    assert grafana_query_metrics('label_values(radmesh_grpc_requests_total{namespace=~"$namespace"}, service)') \
        == {"radmesh_grpc_requests_total"}
    assert grafana_query_metrics("label_values(namespace)") == set()


def test_extractor_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="rat\\(\\) is not a PromQL function"):
        metric_names("sum(rat(radmesh_grpc_requests_total[5m]))")
    with pytest.raises(ValueError, match="__name__"):
        metric_names('{__name__=~"radmesh_.*"}')


def test_a_made_up_metric_or_label_is_reported():
    exported = {"radmesh_grpc_requests_total": {"service", "method", "code"},
                "nv_inference_queue_duration_us": {"model", "version"}}
    bad = {"panels": [{"title": "bad", "targets": [
        {"refId": "A", "expr": 'sum(rate(radmesh_grpc_requests_totl{namespace=~"$namespace"}[5m]))'},
        {"refId": "B", "expr": 'rate(nv_inference_queue_duration_us{modle="x"}[5m])'},
        {"refId": "C", "expr": 'rate(radmesh_grpc_requests_total{code="OK", pod="p"}[5m])'},
    ]}]}
    assert problems(bad, exported) == [
        "panel 'bad' target A: radmesh_grpc_requests_totl is not exported",
        "panel 'bad' target B: nv_inference_queue_duration_us has no label 'modle' (it has ['model', 'version'])",
    ]


# ---- the dashboard ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_shape_variables_and_datasource(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "service", "model"} <= set(variables)
    panels = list(_panels(dashboard["panels"]))
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for p in panels:
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            assert 'namespace=~"$namespace"' in t["expr"], f"{p['title']}: not limited to $namespace"
    for name in ("service", "model"):
        assert "$namespace" in variables[name]["query"]["query"]


def test_dashboard_covers_what_operators_watch(dashboard):
    used = used_metrics(dashboard)
    assert {"radmesh_grpc_requests_total", "radmesh_grpc_request_duration_seconds_bucket",
            "radmesh_grpc_in_flight_requests", "nv_inference_queue_duration_us",
            "nv_inference_compute_infer_duration_us", "nv_gpu_utilization"} <= used
    exprs = [e for _, e, _ in expressions(dashboard)]
    assert any(e.startswith("histogram_quantile(0.95,") for e in exprs)                   # p95 latency
    assert any(re.search(r"by \(service, method, code\)", e) for e in exprs)              # errors by code
    assert any("by (model)" in e and "nv_inference_queue_duration_us" in e for e in exprs)   # per model


# ---- against real servers -----------------------------------------------------------------------

def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


@pytest.fixture(scope="module")
def radmesh_exported(tmp_path_factory) -> dict[str, set[str]]:
    """A real assistant service (it exports the shared RPC metrics and its own) after one RPC."""
    from radmesh.v1 import assistant_pb2, assistant_pb2_grpc

    svc = start_service("assistant", tmp_path_factory.mktemp("assistant"), "--drain-s", "1")
    try:
        with grpc.insecure_channel(svc.target) as ch:
            with pytest.raises(grpc.RpcError) as e:
                assistant_pb2_grpc.AssistantServiceStub(ch).GetSession(
                    assistant_pb2.GetSessionRequest(session_id="no-such-session"), timeout=10)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
        text = _scrape(svc.metrics_port)
    finally:
        svc.stop()
    assert 'code="NOT_FOUND",method="GetSession"' in text
    return parse_exposition(text)


_IDENTITY_MODEL = '''\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy().copy())]) for r in requests]
'''
_IDENTITY_CONFIG = '''\
name: "identity"
backend: "python"
max_batch_size: 4
dynamic_batching {}
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''


@pytest.fixture(scope="module")
def triton_exported(tmp_path_factory) -> dict[str, set[str]]:
    """A real tritonserver's /metrics after one inference.

    A one-line Python-backend model instead of universal_seg: the per-model metric families
    are the same for every model, and this one loads in seconds instead of exporting ONNX.
    """
    import tritonclient.grpc as grpcclient

    from radmesh.triton.launcher import TritonProcess

    tmp = tmp_path_factory.mktemp("triton-metrics")
    (tmp / "repo" / "identity" / "1").mkdir(parents=True)
    (tmp / "repo" / "identity" / "config.pbtxt").write_text(_IDENTITY_CONFIG)
    (tmp / "repo" / "identity" / "1" / "model.py").write_text(_IDENTITY_MODEL)
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    grpc_port, http_port, metrics_port = sorted(ports)
    triton = TritonProcess(tmp / "repo", grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                           models=("identity",), log_path=tmp / "triton.log")
    triton.start(timeout_s=120)
    try:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        x = grpcclient.InferInput("x", [1, 2], "FP32")
        x.set_data_from_numpy(np.ones((1, 2), np.float32))
        client.infer("identity", [x], client_timeout=30)
        client.close()
        # Triton counts a request after its response has gone out: wait for the count to show
        deadline = time.monotonic() + 15
        while True:
            text = _scrape(metrics_port)
            if 'nv_inference_request_success{model="identity",version="1"} 1' in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        triton.stop()
    assert 'nv_inference_request_success{model="identity",version="1"} 1' in text, text
    return parse_exposition(text)


def test_triton_list_matches_a_real_triton(triton_exported):
    served = {n for n, src in TRITON_METRICS.items() if src == "server"}
    assert served - set(triton_exported) == set(), "listed as exported but the real server has no such metric"
    # GPU metrics come from DCGM: none on this CPU-only host, so they rest on Triton's docs
    gpu = {n for n, src in TRITON_METRICS.items() if src == "docs"}
    assert gpu & set(triton_exported) == set()
    assert {"model", "version"} <= triton_exported["nv_inference_queue_duration_us"]
    assert "reason" in triton_exported["nv_inference_request_failure"]


def test_every_dashboard_metric_is_exported(dashboard, radmesh_exported, triton_exported):
    exported = {n: labels for n, labels in radmesh_exported.items() if n.startswith("radmesh_")}
    exported.update({n: triton_exported.get(n, set()) for n in TRITON_METRICS})
    assert problems(dashboard, exported) == []
    used = used_metrics(dashboard)
    assert used and all(n.startswith(("radmesh_", "nv_")) for n in used), sorted(used)
    # the alerts and the adapter rule in docs/operations.md, by the same rules
    doc = {"panels": [{"title": "docs/operations.md", "targets": [
        {"refId": where, "expr": expr} for where, expr in doc_queries(OPERATIONS.read_text())]}]}
    assert len(doc["panels"][0]["targets"]) >= 5
    assert problems(doc, exported) == []
    # and the same check fails once a name is made up
    broken = copy.deepcopy(dashboard)
    target = next(p for p in _panels(broken["panels"]) if p.get("targets"))["targets"][0]
    target["expr"] = target["expr"].replace("radmesh_grpc_requests_total", "radmesh_grpc_request_total")
    assert any("radmesh_grpc_request_total is not exported" in p for p in problems(broken, exported))


# ---- docs/operations.md names only values the chart has -------------------------------------------

_SECRET_KEYS = {"tls.crt", "tls.key", "ca.crt"}      # keys inside Secrets, not values
_FILE_SUFFIX = r"\.(?:ya?ml|md|py|json|txt|sh|tpl|pbtxt|onnx|plan)$"


def value_paths(markdown: str) -> set[str]:
    """Backticked dotted names (``triton.gpu.enabled``, ``services.<name>.replicas``, ``tls.*``)."""
    found = set()
    for tok in re.findall(r"`([^`\s]+)`", markdown):
        if not re.fullmatch(r"[a-z][A-Za-z0-9]*(\.(?:[A-Za-z0-9]+|<name>|\*))+", tok):
            continue
        if tok in _SECRET_KEYS or tok.startswith("radmesh.v1.") or re.search(_FILE_SUFFIX, tok):
            continue
        found.add(tok)
    return found


def missing_value(values: dict, path: str) -> str | None:
    """None when ``path`` exists in ``values``; ``<name>`` means every key at that level, ``*`` any."""
    def walk(node, parts, done):
        if not parts:
            return None
        head, rest = parts[0], parts[1:]
        if not isinstance(node, dict):
            return ".".join(done)
        if head == "*":
            return None
        if head == "<name>":
            for key, child in node.items():
                miss = walk(child, rest, done + [key])
                if miss:
                    return miss
            return None
        if head not in node:
            return ".".join(done + [head])
        return walk(node[head], rest, done + [head])
    return walk(values, path.split("."), [])


def test_operations_page_names_only_values_the_chart_has():
    import yaml

    values = yaml.safe_load(VALUES.read_text())
    paths = value_paths(OPERATIONS.read_text())
    assert len(paths) > 20 and "triton.gpu.enabled" in paths
    missing = {p: missing_value(values, p) for p in sorted(paths) if missing_value(values, p)}
    assert missing == {}, f"docs/operations.md names values that helm/radmesh/values.yaml lacks: {missing}"
    assert missing_value(values, "triton.gpu.enabeld") == "triton.gpu.enabeld"
    assert missing_value(values, "services.<name>.replicaz")
