"""Test-only helpers: synthetic result trees (``report_fixtures``) and a local SLURM cluster
(``slurm_cluster``). Imported as ``helpers.<module>``: pytest puts ``tests/`` on ``sys.path``
because ``tests/`` is not a package."""
