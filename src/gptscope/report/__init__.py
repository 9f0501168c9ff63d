"""Reports: a run folder (or any model) turned into one self-contained HTML page, and the demo.

``build_report(run)`` looks at what a run has (metrics, a tokenizer, a task) and adds the
sections that apply; ``run_demo(out)`` is what ``make demo`` runs.
"""

from gptscope.report.build import build_report, write_report
from gptscope.report.demo import DemoResult, run_demo

__all__ = ["DemoResult", "build_report", "run_demo", "write_report"]
