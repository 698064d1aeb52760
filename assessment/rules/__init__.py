"""The rules: one module per rule id (``mscc-red-flags`` -> ``mscc_red_flags.py``), holding the
rule's criteria, its wording and its ``evaluate``; its safety case is ``docs/rules/<rule id>.md``.

``concepts`` holds the clinical concepts several rules share (oncology context, back-pain
episode, G-CSF windows, NSAID safety, imaging); ``situation`` what every rule of a hook sees
and the finding assembly they share. Imports point one way: concepts <- situation <- rule
modules <- :mod:`assessment.engine`, which runs them.
"""
