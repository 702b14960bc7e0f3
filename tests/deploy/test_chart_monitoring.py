"""The chart's PrometheusRule, unit-tested with promtool on the rule as the chart renders it.

deploy/helm/stockpipe/tests/prometheusrule-test.yaml holds the cases (series in, alerts out);
this renders the rule (release and namespace "stockpipe"), checks it with `promtool check
rules`, and runs `promtool test rules`.
"""

from __future__ import annotations

import shutil
import subprocess

import yaml
from helmchart import CHART, one, render, tool


def _rules_file(tmp_path, values=None):
    docs = render({"monitoring": {"prometheusRule": {"enabled": True}}, **(values or {})},
                  release="stockpipe", namespace="stockpipe")
    rule = one(docs, "PrometheusRule", "stockpipe")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def test_rules_are_valid_promql(tmp_path) -> None:
    proc = subprocess.run([tool("promtool"), "check", "rules", str(_rules_file(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alerts_fire_when_they_should(tmp_path) -> None:
    _rules_file(tmp_path)
    shutil.copy(CHART / "tests" / "prometheusrule-test.yaml", tmp_path / "test.yaml")
    proc = subprocess.run([tool("promtool"), "test", "rules", "test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_every_alert_has_a_promtool_case() -> None:
    docs = render({"monitoring": {"prometheusRule": {"enabled": True}}}, release="stockpipe", namespace="stockpipe")
    alerts = {r["alert"] for g in one(docs, "PrometheusRule", "stockpipe")["spec"]["groups"] for r in g["rules"]}
    cases = yaml.safe_load((CHART / "tests" / "prometheusrule-test.yaml").read_text())["tests"]
    tested = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert alerts == tested


def test_forecaster_alert_goes_with_the_forecaster(tmp_path) -> None:
    text = _rules_file(tmp_path, {"forecaster": {"enabled": False}}).read_text()
    assert "StockPipelineForecasterFailing" not in text
