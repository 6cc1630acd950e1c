"""checkov (infrastructure scan) on template.yaml: no failed check, and every suppression carries its reason.

checkov runs from its own venv (requirements-checkov.txt: it pins a boto3 other than ours), made on first use.
Before issue 16 it reported 22 failed checks; each was fixed in the template or skipped on its resource with a
`comment` saying why (resource Metadata, checkov's skip syntax).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infra.local import template

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".local" / "tools" / "checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, dict]:
    """One checkov run (its start-up is most of its time) over template.yaml and a copy whose log groups lost
    their suppression: the failed and skipped checks of each file."""
    subprocess.run(["make", "-s", ".local/tools/checkov/.installed"], cwd=ROOT, check=True, timeout=600)
    folder = tmp_path_factory.mktemp("scan")
    text = (ROOT / "template.yaml").read_text()
    (folder / "template.yaml").write_text(text)
    (folder / "without_log_reasons.yaml").write_text(text.replace("- id: CKV_AWS_158", "- id: CKV_AWS_NONE"))
    # No --quiet: it would leave the skipped checks (and their reasons) out of the report.
    result = subprocess.run([str(CHECKOV), "-d", str(folder), "--framework", "cloudformation", "--compact",
                             "-o", "json"], capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
    by_file: dict[str, dict] = {}
    for outcome in ("failed_checks", "skipped_checks", "passed_checks"):
        for check in report["results"][outcome]:
            by_file.setdefault(Path(check["file_path"]).name, {"failed_checks": [], "skipped_checks": [],
                                                               "passed_checks": []})[outcome].append(check)
    return by_file


def test_checkov_finds_no_failed_check_and_every_skip_says_why(reports):
    report = reports["template.yaml"]

    failed = [(c["check_id"], c["resource"]) for c in report["failed_checks"]]
    assert failed == [], failed
    assert report["passed_checks"], "the scan must have looked at the template"
    skipped = report["skipped_checks"]
    assert skipped, "the scan must have seen the template's suppressions"
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 8, f"{check['check_id']} on {check['resource']}: no reason given ({reason!r})"


def test_a_suppression_removed_shows_up_as_a_failed_check(reports):
    # The scan can fail: without the log groups' reason, each of them is reported again.
    failed = reports["without_log_reasons.yaml"]["failed_checks"]
    log_groups = [r for r in template.load()["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]

    assert {c["check_id"] for c in failed} == {"CKV_AWS_158"} and len(failed) == len(log_groups) > 0
