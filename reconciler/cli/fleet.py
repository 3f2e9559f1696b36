"""`fleetgate fleet status|serve`: every device of the repository with its last report.

``fleet status (--broker URL | --from DIR) [--repo PATH]`` reads the retained
``{topic}/+/status`` and ``{topic}/+/online`` messages of the broker (until none came
for half a second) or a folder of ``<device>.json`` status files, joins them with the
repository's devices at its head and prints a table by site, or with ``--output json``
the fleet document of DESIGN.md §6. Filters: ``--selector k=v``, ``--outcome``,
``--behind``. Invalid reports are one warning line each on stderr (the device is shown
as never reporting). Exit 0; 1 when the broker cannot be read; 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli import EXIT_OK, add_output_flag, add_repo_flags, checkout_repo, selector_of
from reconciler.cli.output import emit
from reconciler.errors import SourceError, UsageError
from reconciler.fleet import labelcache
from reconciler.fleet.collect import read_folder
from reconciler.fleet.devices import fleet_devices
from reconciler.fleet.reports import Report, reports_from_messages
from reconciler.fleet.table import render_text
from reconciler.fleet.view import (
    FleetView,
    build_view,
    dumps_view,
    filter_view,
    with_waves,
)
from reconciler.fleet.waves import wave_summary
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.waves import Rollout, read_rollout
from reconciler.report.broker import DEFAULT_TOPIC, Broker, check_topic, parse_broker, read_password
from reconciler.source import is_url
from reconciler.source.commits import commit_info, release_candidate
from reconciler.units import parse_duration

MAX_SUBJECTS = 64  # distinct applied revisions whose commit subject is looked up


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fleet", help="the whole fleet: every device with its last report (§6)"
    )
    sub = parser.add_subparsers(dest="fleet_command", metavar="COMMAND")
    sub.required = True
    status = sub.add_parser("status", help="every device of the repository, its last report")
    source = status.add_mutually_exclusive_group(required=True)
    source.add_argument("--broker", help="MQTT broker: mqtt://HOST:1883 or mqtts://HOST:8883")
    source.add_argument("--from", dest="from_dir", help="folder of <device>.json status files")
    add_broker_flags(status)
    add_repo_flags(status)
    add_output_flag(status)
    status.add_argument(
        "--selector", action="append", default=[], help="only devices with label k=v (repeat)"
    )
    status.add_argument(
        "--outcome", action="append", default=[], help="only devices with this outcome (repeat)"
    )
    status.add_argument("--behind", action="store_true", help="only devices behind the head")
    status.add_argument(
        "--stale-after",
        default="15m",
        help="a report older than this is stale (default 15m: three report intervals)",
    )
    status.set_defaults(handler=run_status)
    from reconciler.cli.fleetserve import register_serve  # noqa: PLC0415  # optional part

    register_serve(sub)


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help="topic prefix (default fleetgate)")
    parser.add_argument("--username", default=None, help="MQTT user name (a viewer)")
    parser.add_argument("--password-file", default=None, help="file holding the MQTT password")
    parser.add_argument("--ca", default=None, help="CA file for mqtts:// (default: system CAs)")


def broker_of(args: argparse.Namespace) -> Broker:
    broker = parse_broker(args.broker, "--broker")
    if (args.username is None) != (args.password_file is None):
        raise UsageError("--username and --password-file go together; pass both")
    if args.ca is not None and not broker.tls:
        raise UsageError("--ca needs an mqtts:// broker URL")
    if args.ca is not None and not Path(args.ca).is_file():
        raise UsageError(f"--ca {args.ca}: no such file")
    password = None
    if args.password_file is not None:
        password = read_password(Path(args.password_file), "--password-file")
    ca = Path(args.ca) if args.ca else None
    return Broker(broker.host, broker.port, broker.tls, ca, args.username, password)


def repository_devices(repo: str, ref: str | None) -> tuple[dict[str, dict[str, str]], str | None]:
    """The devices (id → labels) of the repository and its head commit."""
    devices, head, _ = repository_fleet(repo, ref)
    return devices, head


def repository_fleet(
    repo: str, ref: str | None
) -> tuple[dict[str, dict[str, str]], str | None, Rollout]:
    """The devices (id → labels), the head commit and the rollout (waves) of the repository."""
    checkout = checkout_repo(repo, ref)
    tree = RepoTree(checkout.root)
    devices, problems = fleet_devices(tree, labelcache.cache_file())
    for problem in problems:
        print(f"fleetgate: warning: {problem}", file=sys.stderr)
    return devices, checkout.revision, read_rollout(tree)[0]


def membership_of(rollout: Rollout, devices: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """``device -> wave`` (empty without rollout)."""
    waves = {d: rollout.wave_of(labels) for d, labels in devices.items()}
    return {d: w.name for d, w in waves.items() if w is not None}


def release_of(repo: str, head: str | None, rollout: Rollout) -> tuple[str | None, frozenset[str]]:
    """The first wave's release and the pin-only commits after it (local clones only: for a
    URL the head itself, and a first-wave device that took a promotion commit from the
    branch shows as not running the release)."""
    if head is None or not rollout.waves or is_url(repo):
        return head, frozenset()
    try:
        return release_candidate(Path(repo), head)
    except SourceError as e:
        print(f"fleetgate: warning: {e}", file=sys.stderr)
        return head, frozenset()


def subjects_of(repo: str, view: FleetView) -> dict[str, str]:
    """Commit subjects of the head and the applied revisions (local clones only)."""
    if is_url(repo):
        return {}
    wanted = {r.applied for r in (*view.devices, *view.unknown) if r.applied}
    if view.head:
        wanted.add(view.head)
    subjects: dict[str, str] = {}
    for sha in sorted(wanted)[:MAX_SUBJECTS]:
        if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            continue
        try:
            subjects[sha] = commit_info(Path(repo), sha).subject
        except SourceError:
            continue
    return subjects


def collect(
    args: argparse.Namespace, devices: Iterable[str]
) -> tuple[Mapping[str, Report], tuple[str, ...]]:
    """The reports of ``devices`` (and of any reporter): from the folder or the broker."""
    if args.from_dir is not None:
        return read_folder(Path(args.from_dir))
    from reconciler.report.mqtt import FleetSubscription  # noqa: PLC0415  # paho when asked

    topic = check_topic(args.topic, "--topic")
    reader = FleetSubscription(broker_of(args), topic, statuses=False)
    reader.start()
    try:
        messages = reader.load(devices)
    finally:
        reader.stop()
    return reports_from_messages(messages, topic)


def read_reports(
    args: argparse.Namespace,
) -> tuple[dict[str, dict[str, str]], str | None, Rollout, Mapping[str, Report], tuple[str, ...]]:
    """The repository's devices and head, and the reports: from the folder, or from the
    broker. The repository is read first: with the labels cached that is a tenth of a
    second, and reading 10,000 files while the broker's burst arrived made the two
    threads fight over the interpreter lock."""
    if args.from_dir is not None:
        devices, head, rollout = repository_fleet(args.repo, args.ref)
        return devices, head, rollout, *read_folder(Path(args.from_dir))
    from reconciler.report.mqtt import FleetSubscription  # noqa: PLC0415  # paho when asked

    topic = check_topic(args.topic, "--topic")
    reader = FleetSubscription(broker_of(args), topic, statuses=False)
    devices, head, rollout = repository_fleet(args.repo, args.ref)
    reader.start()
    try:
        messages = reader.load(devices)
    finally:
        reader.stop()
    return devices, head, rollout, *reports_from_messages(messages, topic)


@contextlib.contextmanager
def _without_collector() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: a one-shot command builds 10,000 status
    documents (hundreds of thousands of containers, none of them garbage), and the
    collector's passes over them were a third of the time spent parsing reports."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run_status(args: argparse.Namespace) -> int:
    try:
        stale_after = parse_duration(args.stale_after)
    except ValueError as e:
        raise UsageError(f"--stale-after: {e}") from None
    selector = selector_of(args.selector)
    with _without_collector():
        return _status(args, stale_after, selector)


def _status(args: argparse.Namespace, stale_after: float, selector: dict[str, str]) -> int:
    devices, head, rollout, reports, problems = read_reports(args)
    now = datetime.now(UTC)
    view = build_view(devices, reports, head=head, now=now, stale_after=stale_after)
    view = with_waves(view, membership_of(rollout, devices))
    view = filter_view(view, selector=selector, outcomes=args.outcome, behind=args.behind)
    for problem in problems:
        print(f"fleetgate: warning: {problem}", file=sys.stderr)
    release, passed = release_of(args.repo, head, rollout)
    waves = wave_summary(view, rollout, release, now, passed)
    if args.output == "json":
        emit(dumps_view(view, {"waves": waves}) + "\n")
    else:
        emit(render_text(view, subjects_of(args.repo, view), waves=waves))
    return EXIT_OK
