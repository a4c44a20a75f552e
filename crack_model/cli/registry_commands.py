"""``crack-model registry list|show|promote|rollback`` and ``crack-model gate``.

Wire into the main parser with ``add_registry_commands(commands)``; each sub-command sets a
``handler`` that returns the exit code (``gate``: 0 promote, 3 reject; errors exit 1 through
the CLI's CrackModelError handling).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from crack_model.core.errors import CrackModelError
from crack_model.core.storage import refuse_an_empty_store
from crack_model.evaluation.gate import run_gate
from crack_model.registry.versions import Registry

REGISTRY_ENV = "CRACK_MODEL_REGISTRY"  # same as crack_model.registry.model_uri.REGISTRY_ENV (kept import-free)
EXIT_REJECTED = 3


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=os.environ.get(REGISTRY_ENV),
        help=f"registry store: s3://bucket[/prefix] or a folder (default: ${REGISTRY_ENV})",
    )
    parser.add_argument("--name", default="crack", help="registered model name (default: crack)")


def _add_who(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor", default=os.environ.get("USER") or "unknown", help="who makes the change (default: $USER)"
    )
    parser.add_argument("--run-id", help="the workflow run or ticket behind the change (recorded in the audit log)")


def add_registry_commands(commands: Any) -> None:
    """Add ``registry`` (list, show, promote, rollback) and ``gate`` to an argparse sub-parsers object."""
    registry = commands.add_parser(
        "registry",
        help="list, show, promote and roll back registered model versions",
        description="The model registry under <store>/models/<name>/: immutable versions and the champion and "
        "challenger aliases (changed by compare-and-swap, every change in the audit log).",
    )
    actions = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="registered versions, oldest first, with aliases and gate decisions")
    _add_common(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=run_registry_list)

    show = actions.add_parser("show", help="one version: card, files, data manifest, gate result")
    _add_common(show)
    show.add_argument("--version", help="version to show (default: the champion)")
    show.set_defaults(handler=run_registry_show)

    promote = actions.add_parser(
        "promote",
        help="point an alias (champion by default) at a version",
        description="Move an alias atomically. Promoting to champion needs a passing gate report unless --force; "
        "the change fails if the alias moved since you looked (--expected-current) or another promotion won.",
    )
    _add_common(promote)
    promote.add_argument("--version", required=True, help="the version to promote")
    promote.add_argument("--alias", default="champion", choices=["champion", "challenger"], help="default: champion")
    promote.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    promote.add_argument(
        "--expected-current",
        help="the version the alias must point at now ('none' if unset); default: whatever it points at when read",
    )
    promote.add_argument("--force", action="store_true", help="promote to champion without a passing gate report")
    _add_who(promote)
    promote.set_defaults(handler=run_registry_promote)

    rollback = actions.add_parser("rollback", help="point the champion back at the previous champion")
    _add_common(rollback)
    rollback.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    _add_who(rollback)
    rollback.set_defaults(handler=run_registry_rollback)

    gate = commands.add_parser(
        "gate",
        help="gate a registered candidate against the champion on a holdout (exit 0 promote, 3 reject)",
        description="Score the candidate and the champion on the same holdout, check the policy's floors, "
        "regression limits and runtime agreement, store gate_report.json/.html with the candidate, and with "
        "--promote make a passing candidate champion. Exit 0 on promote, 3 on reject, 1 on error.",
    )
    _add_common(gate)
    gate.add_argument("--candidate", required=True, help="the registered version to gate")
    gate.add_argument(
        "--holdout", required=True, help="holdout folder or store prefix with <class>/[<slice>/]<image> below it"
    )
    gate.add_argument(
        "--policy", help="gate policy JSON (default: the packaged crack_model/evaluation/policies/gate.json)"
    )
    gate.add_argument("--promote", action="store_true", help="make the candidate champion if the gate passes")
    _add_who(gate)
    gate.set_defaults(handler=run_gate_command)


def _registry(args: argparse.Namespace) -> Any:

    if not args.store:
        raise CrackModelError(f"no registry store: pass --store s3://bucket (or a folder) or set {REGISTRY_ENV}")
    return Registry(args.store)


def run_registry_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    versions = registry.list_versions(args.name)
    if not versions:
        refuse_an_empty_store(registry.store)
    if args.json:
        print(json.dumps(versions, indent=2))
        return 0
    if not versions:
        print(f"no versions of {args.name} in {registry.uri}")
        return 0
    print(f"{'version':<34} {'aliases':<20} {'gate':<8} {'runtimes':<34} registered")
    for entry in versions:
        if "problem" in entry:
            print(f"{entry['version']:<34} {','.join(entry['aliases']) or '-':<20} {entry['problem']}")
            continue
        runtimes = ",".join(entry["approved_runtimes"] or []) or "-"
        print(
            f"{entry['version']:<34} {','.join(entry['aliases']) or '-':<20} {entry['gate_decision'] or '-':<8} "
            f"{runtimes:<34} {entry['registered_at']} by {entry['registered_by']}"
        )
    return 0


def run_registry_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    version = args.version or registry.resolve(args.name, "champion")
    print(json.dumps(registry.show(args.name, version), indent=2))
    return 0


def run_registry_promote(args: argparse.Namespace) -> int:
    registry = _registry(args)
    registry.read_version(args.name, args.version)  # a version that does not exist says so, not "no gate report"
    if args.alias == "champion" and not args.force:
        report = registry.gate_report(args.name, args.version)
        if report is None or report.get("decision") != "promote":
            state = "has no gate report" if report is None else f"was rejected by the gate ({report['decision']})"
            msg = f"version {args.version} {state}: run crack-model gate first, or pass --force to override"
            raise CrackModelError(msg)
        champion = registry.aliases(args.name).get("champion")
        if report.get("champion_version") not in (champion, args.version):
            msg = (
                f"version {args.version} passed the gate against champion {report.get('champion_version')}, but the "
                f"champion is {champion} now: register a new version and gate it, or pass --force to override"
            )
            raise CrackModelError(msg)
    if args.expected_current is None:
        expected = registry.aliases(args.name).get(args.alias)
    else:
        expected = None if args.expected_current.lower() == "none" else args.expected_current
    entry = registry.promote(
        args.name,
        args.version,
        args.alias,
        expected_current=expected,
        actor=args.actor,
        reason=args.reason,
        run_id=args.run_id,
        unless_dethroned=args.alias == "champion" and not args.force,  # rolled back: its pass does not bring it back
    )
    if entry is None:
        print(f"{args.name}@{args.alias} already points at {args.version}")
    else:
        print(f"{args.name}@{args.alias}: {entry.from_version} -> {entry.to_version} (revision {entry.revision})")
    return 0


def run_registry_rollback(args: argparse.Namespace) -> int:
    registry = _registry(args)
    entry = registry.rollback(args.name, reason=args.reason, actor=args.actor, run_id=args.run_id)
    print(f"{args.name}@champion rolled back: {entry.from_version} -> {entry.to_version} (revision {entry.revision})")
    return 0


def run_gate_command(args: argparse.Namespace) -> int:
    registry = _registry(args)
    report = run_gate(
        registry,
        args.name,
        args.candidate,
        args.holdout,
        args.policy,
        promote=args.promote,
        actor=args.actor,
        run_id=args.run_id,
    )
    print(f"gate {args.name} {args.candidate} vs champion {report.champion_version or 'none'}: {report.decision}")
    for name, reason in zip(report.failed_checks, report.reasons, strict=True):
        print(f"  FAILED {name}: {reason}")
    for note in report.notes:
        print(f"  note: {note}")
    if report.reused:
        print("  (the stored report of an earlier run against the same champion, policy and holdout)")
    print(f"  approved runtimes: {', '.join(report.approved_runtimes) or 'none'}")
    print(f"  report: {report.html_url}")
    if report.promoted:
        print(f"  {args.name}@champion is now {args.candidate}")
    return 0 if report.passed else EXIT_REJECTED
