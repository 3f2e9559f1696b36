"""The fleet view (DESIGN.md §6): the repository's devices joined with their reports.

Pure: :mod:`reports` parses what devices sent, :mod:`view` joins, summarises and filters,
:mod:`table` prints. Adapters: :mod:`collect` (a folder of status files) and
:mod:`reconciler.report.mqtt` (retained messages of a broker).
"""
