"""JUnit XML for CI systems (Jenkins, GitLab, GitHub test reporters): one <testsuite> per model, one
<testcase> per model x target x check. A failed budget is a <failure>, a cell that could not be built
an <error>, a check with nothing to hold it to <skipped>. Each testcase carries the wall time of the phase
that produced it (size: the build, accuracy: the evaluation, latency and instructions: the measurement;
a baseline check, its phase's), so a CI dashboard shows where the gate's minutes go; no timestamps."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from optkit.harness.gate import CheckReport

PHASE_OF_CHECK = {"size": "build", "accuracy": "accuracy", "latency": "latency", "instructions": "latency"}


def _seconds(cell, check: str) -> float:
    return cell.seconds.get(PHASE_OF_CHECK.get(check.removeprefix("baseline-"), ""), 0.0)


def junit_xml(report: CheckReport) -> bytes:
    root = ET.Element("testsuites", name="optkit check")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for model in dict.fromkeys(c.model for c in report.cells):
        suite = ET.SubElement(root, "testsuite", name=model)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for cell in (c for c in report.cells if c.model == model):
            classname = f"optkit.check.{model}.{cell.target}"
            if cell.error:
                case = ET.SubElement(suite, "testcase", name=f"{model} on {cell.target}: build", classname=classname,
                                     time=f"{cell.seconds.get('build', 0.0):.3f}")
                ET.SubElement(case, "error", message=cell.error, type="build").text = cell.error
                counts["tests"] += 1
                counts["errors"] += 1
                continue
            for v in cell.verdicts:
                case = ET.SubElement(suite, "testcase", name=f"{model} on {cell.target}: {v.check}",
                                     classname=classname, time=f"{_seconds(cell, v.check):.3f}")
                counts["tests"] += 1
                if v.status == "fail":
                    ET.SubElement(case, "failure", message=v.message, type=v.check).text = v.message
                    counts["failures"] += 1
                elif v.status in ("info", "noisy"):
                    ET.SubElement(case, "skipped", message=v.message)
                    counts["skipped"] += 1
                else:
                    ET.SubElement(case, "system-out").text = v.message
        seconds = sum(sum(c.seconds.values()) for c in report.cells if c.model == model)
        for k, n in counts.items():
            suite.set(k, str(n))
            totals[k] += n
        suite.set("time", f"{seconds:.3f}")
    for k, n in totals.items():
        root.set(k, str(n))
    root.set("time", f"{sum(sum(c.seconds.values()) for c in report.cells):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
