"""The governance report: ``backpain-cds report`` (README "Governance report").

:mod:`.queries` reads one window of ``card_audit``, ``feedback``, ``feedback_unmatched``,
``snooze`` and ``hook_call``; :mod:`.figures` turns the rows into the report's figures; :mod:`.render` writes
them as text, JSON or CSV and :mod:`.html` as one self-contained HTML page; :mod:`.command` is
the command line.
"""
