#!/usr/bin/env python3
"""Hot-folder crash test: SIGKILL the importing process while photos arrive; every file must end
up imported exactly once.

The child is the app's own ingest path without the window: a
:class:`~desktop_app.core.sources.ResilientSource` around the
:class:`~desktop_app.core.sources.HotFolderSource` (the same persisted "seen" state as the
app), each file handed to :func:`~desktop_app.core.capture.process_capture`, which stores it in
the :class:`~desktop_app.core.store.CaptureStore` and then marks the file done
(``Frame.on_stored``). It prints ``READ``, ``STORED`` and ``ACKED`` lines as it goes.

The parent plays a tethered camera: it drops new photos (each a different picture, written under a
hidden temporary name and renamed into place) at random moments, and SIGKILLs the child after a
random delay. After every kill it opens the store like the restarting app and counts the captures
of every file (more than one: a duplicate). At the end a last child runs until every file has
been imported, and then

* ``never_imported``: files with no capture (the bug: files marked seen before they were stored);
* ``duplicates``: captures beyond the first of one file;
* ``kills_before_store`` / ``kills_between_store_and_ack``: how often a kill landed in the two
  windows that matter (a file read but not yet stored; stored but not yet marked done).

Usage::

    python scripts/hotfolder_crash_test.py --kills 25
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("hotfolder_crash_test")


# --------------------------------------------------------------------------------------------
# child: the app's hot-folder ingest path


def run_child(folder: Path, root: Path, state_path: Path, settle_s: float) -> None:
    from desktop_app.core.capture import CaptureContext, process_capture
    from desktop_app.core.sources import HotFolderSource, ResilientSource, source_label
    from desktop_app.core.store import CaptureStore

    store = CaptureStore(root)
    source = ResilientSource(
        HotFolderSource(folder, poll_interval_s=0.02, settle_s=settle_s, state_path=state_path)
    )
    source.open()
    label = source_label(source)  # as the app's session does: "hotfolder:<folder>/<file>"
    context = CaptureContext("staff", "crash-test", "HF-1", "left forearm", "")
    print("READY", flush=True)
    empty_polls = 0
    while True:
        frame = source.read()
        if frame is None or not frame.is_capture:
            empty_polls += 1
            if empty_polls == 25:  # about half a second with nothing new
                print("IDLE", flush=True)
            continue
        empty_polls = 0
        name = frame.label
        print(f"READ {name}", flush=True)

        def stored(frame_on_stored=frame.on_stored, name=name) -> None:  # type: ignore[no-untyped-def]
            print(f"STORED {name}", flush=True)
            if frame_on_stored is not None:
                frame_on_stored()
            print(f"ACKED {name}", flush=True)

        outcome = process_capture(
            None,
            store,
            frame.image,
            frame.colour_order,
            context,
            f"{label}/{name}",
            frame.encoded,
            on_stored=stored,
        )
        if outcome.record is None:
            print(f"FAILED {name}", flush=True)


# --------------------------------------------------------------------------------------------
# parent


@dataclass
class Totals:
    kills: int = 0
    child_exited_early: int = 0
    files_written: int = 0
    files_imported: int = 0
    never_imported: int = 0
    duplicates: int = 0
    kills_before_store: int = 0  # a file was read, not yet stored, when the kill came
    kills_between_store_and_ack: int = 0  # stored, not yet marked done: re-imported, deduped
    reimports_deduplicated: int = 0  # files read again after a kill that were already stored
    recovered_orphans: int = 0  # captures rebuilt from an interrupted save at a restart
    store_failures: int = 0
    inconsistencies: int = 0
    problems: list[str] = field(default_factory=list)


def _write_photo(
    folder: Path, index: int, rng: random.Random, args_width: int, args_height: int
) -> str:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(rng.randrange(1 << 30)).integers(
        0, 256, size=(args_height + index % 17, args_width, 3), dtype=np.uint8
    )
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=90)
    name = f"IMG_{index:04d}.jpg"
    tmp = folder / f".{name}.partial"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, folder / name)  # as tether software does: the file appears complete
    return name


def _captures_per_file(root: Path, folder: Path, totals: Totals) -> dict[str, int]:
    """Open the store like the restarting app; captures per hot-folder file name."""
    from desktop_app.core.store import CaptureStore

    with CaptureStore(root) as store:
        report = store.startup_report
        totals.recovered_orphans += len(report.recovered)
        if report.damaged_rows or report.missing_images or report.database_rebuilt_from:
            totals.inconsistencies += 1
            totals.problems.append(f"reconciliation: {report}")
        check = store._conn.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            totals.inconsistencies += 1
            totals.problems.append(f"integrity_check: {check}")
        counts: dict[str, int] = {}
        prefix = f"hotfolder:{folder}/"
        for record in store.list():
            source = record.info.source
            if source.startswith(prefix):
                name = source[len(prefix) :]
            elif source == "recovered":  # sidecar lost: cannot be attributed (never expected)
                totals.inconsistencies += 1
                totals.problems.append(f"capture {record.id} recovered without details")
                continue
            else:
                name = source
            counts[name] = counts.get(name, 0) + 1
    return counts


def _child_command(args: argparse.Namespace, folder: Path, root: Path, state: Path) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--folder",
        str(folder),
        "--root",
        str(root),
        "--state",
        str(state),
        "--settle",
        str(args.settle),
    ]


def _account(lines: list[str], state: dict[str, set[str]], totals: Totals, killed: bool) -> None:
    """Update what was read / stored / acknowledged from one child's output."""
    read: list[str] = []
    stored: set[str] = set()
    acked: set[str] = set()
    for line in lines:
        word, _, name = line.partition(" ")
        if word == "READ":
            read.append(name)
            if name in state["stored_ever"]:
                totals.reimports_deduplicated += 1
        elif word == "STORED":
            stored.add(name)
        elif word == "ACKED":
            acked.add(name)
        elif word == "FAILED":
            totals.store_failures += 1
    state["stored_ever"] |= stored
    state["acked_ever"] |= acked
    if killed and read:
        last = read[-1]
        if last not in stored:
            totals.kills_before_store += 1
        elif last not in acked:
            totals.kills_between_store_and_ack += 1


def run_parent(args: argparse.Namespace) -> Totals:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hotfolder-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    folder, root, state_path = workdir / "tether", workdir / "captures", workdir / "seen.json"
    folder.mkdir(exist_ok=True)
    rng = random.Random(args.seed)
    totals = Totals()
    written: list[str] = []
    state: dict[str, set[str]] = {"stored_ever": set(), "acked_ever": set()}
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    command = _child_command(args, folder, root, state_path)
    started = time.monotonic()
    for i in range(args.kills):
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        delay = rng.uniform(args.min_delay, args.max_delay)
        # photos arrive at random moments while the child runs (some before it is up)
        moments = sorted(rng.uniform(0.0, delay) for _ in range(rng.randint(0, args.max_files)))
        t0 = time.monotonic()
        for moment in moments:
            time.sleep(max(0.0, moment - (time.monotonic() - t0)))
            written.append(_write_photo(folder, len(written) + 1, rng, args.width, args.height))
        time.sleep(max(0.0, delay - (time.monotonic() - t0)))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            totals.kills += 1
        else:
            totals.child_exited_early += 1
        out, err = child.communicate()
        if child.returncode != -signal.SIGKILL:
            totals.inconsistencies += 1
            totals.problems.append(
                f"kill {i + 1}: child exited with {child.returncode}: "
                f"{err.decode(errors='replace')[-1500:]}"
            )
        _account(out.decode(errors="replace").splitlines(), state, totals, killed=True)
        counts = _captures_per_file(root, folder, totals)  # the app restarting
        dup_now = sum(n - 1 for n in counts.values() if n > 1)
        if dup_now:
            totals.problems.append(f"kill {i + 1}: {dup_now} duplicate capture(s)")
        if args.verbose or (i + 1) % 10 == 0:
            logger.info(
                "%d kills, %d files written, %d imported so far, %d duplicates (%.0f s)",
                totals.kills,
                len(written),
                len(counts),
                dup_now,
                time.monotonic() - started,
            )
    # the last start: runs until every file has been imported (or the deadline)
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    assert child.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], 0.2)
        if ready:
            line = child.stdout.readline().strip()
            if not line and child.poll() is not None:
                break
            if line == "IDLE":  # every file there has been seen; the store has the verdict
                break
            lines.append(line)
            _account([line], state, totals, killed=False)
    child.kill()
    child.communicate()
    counts = _captures_per_file(root, folder, totals)
    totals.files_written = len(written)
    totals.files_imported = sum(1 for name in written if counts.get(name, 0) >= 1)
    totals.never_imported = sum(1 for name in written if counts.get(name, 0) == 0)
    totals.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    stray = sorted(set(counts) - set(written))
    if stray:
        totals.inconsistencies += 1
        totals.problems.append(f"captures of unknown files: {stray[:5]}")
    if totals.never_imported:
        missing = [name for name in written if counts.get(name, 0) == 0]
        totals.problems.append(f"never imported: {missing[:10]}")
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--min-delay", type=float, default=0.6, help="seconds before the kill")
    parser.add_argument("--max-delay", type=float, default=1.6, help="seconds before the kill")
    parser.add_argument("--max-files", type=int, default=4, help="photos dropped per run, at most")
    parser.add_argument("--width", type=int, default=1024, help="photo width (pixels)")
    parser.add_argument("--height", type=int, default=768, help="photo height (pixels)")
    parser.add_argument("--settle", type=float, default=0.05, help="hot folder settle time (s)")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--report", type=Path, default=None, help="write the totals as JSON")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.ERROR)
        run_child(args.folder, args.root, args.state, args.settle)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    logger.info("seed %d, %d kills", args.seed, args.kills)
    started = time.monotonic()
    totals = run_parent(args)
    summary = asdict(totals)
    summary["seed"] = args.seed
    summary["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text)
    ok = totals.never_imported == 0 and totals.duplicates == 0 and totals.inconsistencies == 0
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
