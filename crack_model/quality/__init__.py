"""Data validation with Great Expectations: is a batch fit to be scored (or a pool fit to train on)?

A batch is profiled (``crack_model.quality.profile``: one row per object) and the rows are checked
against an expectation suite kept in the repository (``crack_model/quality/suites/*.json``, plain
GX 1.x suite JSON whose thresholds are ``$PARAMETER`` references filled from
``ValidationThresholds``). Checks GX has no expectation for are computed as columns or a
small derived table first: ``duplicate_of`` and ``in_holdout`` per object, and one row per
known class (``images``, ``share_of_largest``) for the class size and balance checks.

The outcome is one of:

* ``passed``: every expectation holds and no object broke a per-object check.
* ``passed_with_quarantine``: every expectation holds thanks to its ``mostly`` tolerance, and
  the few objects that broke one (at most ``max_bad_fraction`` of the batch) are held back:
  their bytes are copied to ``quarantine/<batch_id>/uploads/<relative key>`` and listed with reasons
  in ``quarantine/<batch_id>/quarantine.json``; scoring skips ``quarantined_keys(...)``.
* ``failed``: an expectation does not hold; the batch must not be scored. The reasons say why.

Every run writes ``validation/<batch_id>/result.json`` (the GX validation result),
``outcome.json`` (small: outcome, reasons, quarantined keys, counts, drift), ``profile.csv``,
``report.html`` (each failing expectation and the objects that broke it) and GX Data Docs
(``data_docs/``). Nothing is ever deleted: uploads stay where they are, quarantine holds copies.

The work is done in one module per job:

* ``thresholds``: ``ValidationThresholds``, ``derive_thresholds``
* ``expectations``: the suites (``SUITES``, ``load_suite``) and the GX runner (``run_suite``)
* ``tables``: the ``objects`` and ``classes`` tables the suites check
* ``outcome``: ``PASSED`` / ``PASSED_WITH_QUARANTINE`` / ``FAILED`` and ``ValidationOutcome``
* ``judging``: ``judge`` a GX result, ``validate_profile`` (no I/O)
* ``batch_validation``: ``validate_batch``, ``validate_labeled``, ``write_outputs``, ``load_hashes`` (the I/O)
* ``quarantine``: ``quarantine_objects``, the copies of what validation holds back
* ``report``: ``render_report``, the HTML page
* ``data_docs``: ``write_data_docs``, GX's own Data Docs of the run in ``validation/<batch_id>/data_docs/``
"""
