"""Metric labels stay bounded whatever clients send (dd0c_route/admin/metrics.py)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from dd0c_route.admin.metrics import ProxyMetrics
from dd0c_route.ledger.records import UsageRecord


def label_values(metrics: ProxyMetrics, label: str) -> set[str]:
    out = set()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == "dd0c_route_requests_total":
                out.add(sample.labels[label])
    return out


def test_models_and_endpoints_are_capped():
    metrics = ProxyMetrics(models=["gpt-4o"], max_models=3)
    for n in range(50):
        metrics.observe(UsageRecord(request_id=f"r{n}", model=f"model-{n}", provider="openai", endpoint=f"/v1/x{n}", status=200))
    metrics.observe(UsageRecord(request_id="a", model="gpt-4o", provider="openai", status=200))
    assert label_values(metrics, "model") == {"gpt-4o", "model-0", "model-1", "other"}
    assert label_values(metrics, "endpoint") == {"other", "/v1/chat/completions"}
    assert "key_id" not in {n for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples for n in s.labels}


def test_fallbacks_and_rejections():
    metrics = ProxyMetrics()
    metrics.observe(UsageRecord(request_id="a", model="m", provider="b", status=200, attempts="m@a:503,m@b:200"))
    metrics.observe(UsageRecord(request_id="c", status=429, error_type="budget_exceeded"))
    text = metrics.exposition().decode()
    assert 'dd0c_route_fallbacks_total{provider="a",reason="503"} 1.0' in text
    assert 'dd0c_route_budget_rejections_total{reason="budget_exceeded"} 1.0' in text


def test_grafana_dashboard_uses_only_exported_metrics():
    """Every metric the dashboard queries is one the proxy exports (docs/grafana-dashboard.json)."""
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parent.parent / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {re.sub(r"_(bucket|total)$", "", m) for e in exprs for m in re.findall(r"dd0c_route_[a-z_]+", e)}
    source = (Path(__file__).parent.parent / "dd0c_route" / "admin").glob("*.py")
    defined = set(re.findall(r'"(dd0c_route_[a-z_]+)"', "".join(p.read_text() for p in source)))
    assert used and used <= defined, used - defined
