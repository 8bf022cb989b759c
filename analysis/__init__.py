"""Analysis of finished studies: parameter importance, Pareto fronts and scaling-law views.

Everything here reads frozen records through ``storage.read_api`` and fits with ``surrogates``;
the CLI's read verbs and the dashboard call the same functions, so they cannot give two answers
for one study. Storage itself only returns records and queries.

- ``analysis.pareto``: the project's one non-dominance helper (``pareto_mask``, ``pareto_ranks``,
  ``pareto_front``), used by the search algorithms too, and ``pareto_view``.
- ``analysis.importance``: fANOVA-style importance from a random forest (``importance_view``).
- ``analysis.scaling``: the scaling answer of a study (``scaling_view``; its docstring gives the
  one definition) and a study's trials as a table of runs (``study_runs``).

numpy, pandas, scikit-learn and scipy load with the submodule that needs them.
"""
from __future__ import annotations

__all__ = ["pareto", "importance", "scaling"]
