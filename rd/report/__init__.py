"""The HTML comparison report (``python -m rd report``): see ``rd.report.build`` and its parts."""

from rd.report.build import MAIN_FIGURES, build_report

__all__ = ["build_report", "MAIN_FIGURES"]
