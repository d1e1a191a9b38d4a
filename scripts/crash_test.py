#!/usr/bin/env python3
"""Crash test: SIGKILL a capture-and-submit process at random moments, verify nothing is lost.

Each iteration starts a child process that opens the capture store (reconciling it), then loops:
save a capture (random small photo, accepted or rejected), print ``SAVED <id>`` once ``add``
returned, queue and submit accepted ones, sometimes override or delete a rejected one. The parent
kills the child with SIGKILL after a random delay, then plays the app restarting: it opens the
store and checks

* every capture the child reported as saved is present (row readable, image decodes, sha256
  matches the row); captures reported deleted are gone;
* the database passes ``PRAGMA integrity_check``, no row is damaged, no image file lacks a row and
  no row lacks its image, no temporary files are left;
* nothing was delivered twice: every outbox entry / Orthanc instance belongs to exactly one
  capture, no two deliveries hold the same photo, and every capture marked submitted was
  delivered.

At the end the queue is drained and every accepted capture must have been delivered exactly once.

Usage::

    python scripts/crash_test.py --iterations 500              # outbox target
    python scripts/crash_test.py --iterations 200 --target dicomweb   # a throwaway Orthanc
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("crash_test")


# --------------------------------------------------------------------------------------------
# child: the capture-and-submit process that gets killed


def run_child(root: Path, target_settings: dict[str, str], seed: int, pace_s: float) -> None:
    import numpy as np

    from desktop_app.core.store import CaptureInfo, CaptureStore
    from desktop_app.core.submission import SubmissionQueue, make_target

    rng = np.random.default_rng(seed)
    store = CaptureStore(root)
    queue = SubmissionQueue(store, make_target(target_settings))
    queue.release_stale_claims()  # the killed run's claims, as the app does at start-up
    print("READY", flush=True)
    queue.process_pending()  # resume what an earlier run left queued
    n = 0
    while True:
        n += 1
        accepted = bool(rng.random() < 0.7)
        score = float(rng.uniform(0.55, 1.0) if accepted else rng.uniform(0.0, 0.45))
        info = CaptureInfo(
            mode="staff" if n % 3 else "kiosk",
            operator="crash-test",
            patient_ref=f"CT-{seed % 7}",
            body_site="left forearm",
            note=f"seed {seed} #{n}",
            score=score,
            threshold=0.5,
            model_version="crash-test-model",
            reasons={"blur": float(rng.random()), "dark": float(rng.random())},
            accepted=accepted,
            source="crash-test",
        )
        image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
        record = store.add(image, info)
        print(f"SAVED {record.id}", flush=True)
        if accepted:
            queue.enqueue(record.id)
        else:
            roll = rng.random()
            if roll < 0.3:
                store.review(record.id, "override", "dr-crash", "fine for assessment")
                queue.enqueue(record.id)
            elif roll < 0.45:
                print(f"DELETING {record.id}", flush=True)
                store.delete(record.id, "dr-crash")
                print(f"DELETED {record.id}", flush=True)
        queue.process_pending()
        time.sleep(float(rng.uniform(0.0, pace_s)))


# --------------------------------------------------------------------------------------------
# parent: kill, restart, verify


@dataclass
class Totals:
    iterations: int = 0
    kills: int = 0
    child_exited_early: int = 0
    saved_acknowledged: int = 0
    deleted_acknowledged: int = 0
    captures_lost: int = 0
    deleted_but_present: int = 0
    duplicates: int = 0
    inconsistencies: int = 0
    recovered_orphans: int = 0
    interrupted_deletes_completed: int = 0
    temp_files_cleaned: int = 0
    # kills that landed after the target had the capture but before the row said "submitted":
    # the exactly-once path (the same instance is sent again, the target keeps one copy)
    delivered_but_not_marked: int = 0
    resent_after_kill: int = 0  # submitted captures with more than one send attempt
    delivered: int = 0
    final_captures: int = 0
    problems: list[str] = field(default_factory=list)


class Deliveries:
    """What the target holds: capture id -> list of delivered photo hashes."""

    def __init__(self, kind: str, outbox: Path | None, orthanc: Any) -> None:
        self.kind = kind
        self.outbox = outbox
        self.orthanc = orthanc
        self._cache: dict[str, tuple[tuple[int, int, int, int], str, str]] = {}
        self._instances: dict[str, tuple[str, str]] = {}

    def collect(self) -> tuple[dict[str, list[str]], list[str]]:
        """(capture id -> photo hashes of its deliveries, problems)."""
        by_capture: dict[str, list[str]] = {}
        problems: list[str] = []
        if self.kind == "outbox":
            assert self.outbox is not None
            if not self.outbox.is_dir():
                return by_capture, problems
            from desktop_app.core.submission import OutboxTarget

            OutboxTarget(self.outbox)  # as at app start: clears temp files of a killed write
            names = {p.name for p in self.outbox.iterdir()}
            for name in sorted(names):
                if not name.endswith(".json"):
                    continue
                stem = name[: -len(".json")]
                images = [n for n in (f"{stem}.jpg", f"{stem}.png") if n in names]
                if len(images) != 1:
                    problems.append(f"outbox {stem}: {len(images)} image files")
                    continue
                meta_path, image_path = self.outbox / name, self.outbox / images[0]
                st_m, st_i = meta_path.stat(), image_path.stat()
                signature = (st_m.st_mtime_ns, st_m.st_size, st_i.st_mtime_ns, st_i.st_size)
                cached = self._cache.get(stem)
                if cached is None or cached[0] != signature:
                    cid = json.loads(meta_path.read_text("utf-8"))["capture_id"]
                    cached = (signature, cid, _sha(image_path.read_bytes()))
                    self._cache[stem] = cached
                _, cid, photo_hash = cached
                if cid != stem:
                    problems.append(f"outbox {name} holds capture {cid}")
                by_capture.setdefault(cid, []).append(photo_hash)
            stray = [n for n in names if not n.endswith((".json", ".jpg", ".png"))]
            if stray:
                problems.append(f"outbox holds unexpected files: {stray[:3]}")
        else:
            import io

            import pydicom

            for oid in self.orthanc.instance_ids():
                if oid not in self._instances:  # stored instances never change: read each once
                    raw = self.orthanc.get_bytes(f"/instances/{oid}/file")
                    ds = pydicom.dcmread(io.BytesIO(raw))
                    block = ds.private_block(0x0011, "SkinCaptureAssist 1")
                    self._instances[oid] = (str(block[0x06].value), _sha(ds.PixelData))
                cid, photo_hash = self._instances[oid]
                by_capture.setdefault(cid, []).append(photo_hash)
        return by_capture, problems


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(
    root: Path,
    saved: set[str],
    deleted: set[str],
    deleting: set[str],
    verified: set[str],
    deliveries: Deliveries,
    totals: Totals,
) -> None:
    """Open the store like a restarting app and check every invariant; record problems."""
    from desktop_app.core.store import TEMP_PREFIX, CaptureStore, StorageError

    problems: list[str] = []
    store = CaptureStore(root)
    try:
        report = store.startup_report
        totals.recovered_orphans += len(report.recovered)
        totals.interrupted_deletes_completed += report.deletions_completed
        totals.temp_files_cleaned += report.temp_files_removed
        if report.damaged_rows or report.missing_images or report.database_rebuilt_from:
            problems.append(f"reconciliation: {report}")
        records = {r.id: r for r in store.list()}
        for cid in saved - deleted:
            record = records.get(cid)
            if record is None and cid in deleting:
                # killed mid-delete: the restart finished the deletion the reviewer asked for
                deleted.add(cid)
                continue
            if record is None:
                totals.captures_lost += 1
                problems.append(f"LOST: capture {cid} acknowledged as saved has no row")
                continue
            if cid in verified:  # fully checked before: images are never rewritten
                if not record.image_path.is_file():
                    totals.captures_lost += 1
                    problems.append(f"LOST: capture {cid} image vanished")
                continue
            verified.add(cid)
            try:
                data = record.image_path.read_bytes()
                store.load_image(cid)
            except (OSError, StorageError) as exc:
                totals.captures_lost += 1
                problems.append(f"LOST: capture {cid} image unreadable: {exc}")
                continue
            row_sha = store._conn.execute(
                "SELECT image_sha256 FROM captures WHERE id=?", (cid,)
            ).fetchone()[0]
            if _sha(data) != row_sha:
                problems.append(f"capture {cid}: image differs from its recorded hash")
        for cid in deleted:
            if cid in records:
                totals.deleted_but_present += 1
                problems.append(f"capture {cid} was deleted but is present")
        check = store._conn.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            problems.append(f"integrity_check: {check}")
        if store.damaged_rows():
            problems.append(f"damaged rows: {store.damaged_rows()}")
        files = {p.stem for p in store.images_dir.rglob("*") if p.suffix in (".jpg", ".png")}
        if files != set(records):
            problems.append(
                f"files/rows differ: {sorted(files - set(records))[:3]} without row, "
                f"{sorted(set(records) - files)[:3]} without file"
            )
        temps = list(store.images_dir.rglob(f"{TEMP_PREFIX}*"))
        if temps:
            problems.append(f"temporary files left: {temps[:3]}")
        delivered, delivery_problems = deliveries.collect()
        problems += delivery_problems
        photo_owner: dict[str, str] = {}
        for cid, hashes in delivered.items():
            if len(hashes) > 1:
                totals.duplicates += len(hashes) - 1
                problems.append(f"DUPLICATE: capture {cid} delivered {len(hashes)} times")
            for h in hashes:
                if h in photo_owner and photo_owner[h] != cid:
                    totals.duplicates += 1
                    problems.append(f"DUPLICATE: same photo delivered as {photo_owner[h]}, {cid}")
                photo_owner[h] = cid
            record = records.get(cid)
            if record is None:
                problems.append(f"delivered capture {cid} is not in the store")
            elif record.state == "queued":
                totals.delivered_but_not_marked += 1
            elif record.state != "submitted":
                problems.append(f"delivered capture {cid} is in state {record.state}")
        for record in records.values():
            if record.state == "submitted" and record.id not in delivered:
                problems.append(f"capture {record.id} marked submitted but not delivered")
        totals.final_captures = len(records)
        totals.delivered = len(delivered)
    finally:
        store.close()
    totals.inconsistencies += len(problems)
    for p in problems:
        logger.error("iteration %d: %s", totals.iterations, p)
    totals.problems += [f"iteration {totals.iterations}: {p}" for p in problems]


def drain_and_check(
    root: Path, target_settings: dict[str, str], deliveries: Deliveries, totals: Totals
) -> None:
    """Deliver everything still queued, then require exactly-once delivery of all accepted."""
    from desktop_app.core.store import CaptureStore
    from desktop_app.core.submission import SubmissionQueue, make_target

    with CaptureStore(root) as store:
        queue = SubmissionQueue(store, make_target(target_settings))
        queue.release_stale_claims()  # what the restarted app does (it holds the data-home lock)
        for record in store.list(["accepted", "overridden"]):
            queue.enqueue(record.id)
        for _ in range(20):
            if queue.process_pending().queued == 0:
                break
        records = store.list()
        totals.resent_after_kill = sum(
            1 for r in records if r.state == "submitted" and r.submission_attempts > 1
        )
        delivered, _ = deliveries.collect()
        # Recovered captures ("captured") and rejected ones wait for a reviewer: never sent.
        not_delivered = [
            f"{r.id} ({r.state})"
            for r in records
            if r.state not in ("captured", "rejected") and r.id not in delivered
        ]
        if not_delivered:
            totals.inconsistencies += 1
            totals.problems.append(f"after draining, not delivered: {not_delivered[:5]}")
        wrong_state = [r.id for r in records if r.id in delivered and r.state != "submitted"]
        if wrong_state:
            totals.inconsistencies += 1
            totals.problems.append(f"delivered but not marked submitted: {wrong_state[:5]}")
        totals.delivered = len(delivered)
        for hashes in delivered.values():
            if len(hashes) != 1:
                totals.duplicates += len(hashes) - 1


def run_parent(args: argparse.Namespace) -> Totals:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="crash-test-"))
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "captures"
    rng = random.Random(args.seed)
    totals = Totals()
    orthanc = None
    outbox: Path | None = None
    if args.target == "outbox":
        outbox = workdir / "outbox"
        settings = {"kind": "outbox", "folder": str(outbox)}
    else:
        sys.path.insert(0, str(REPO_ROOT / "tests"))
        from orthanc_server import TEST_USER, OrthancServer, find_orthanc

        found = find_orthanc()
        if isinstance(found, str):
            raise SystemExit(f"cannot run the DICOMweb crash test: {found}")
        orthanc = OrthancServer(workdir / "orthanc", *found)
        orthanc.start()
        settings = {
            "kind": "dicomweb",
            "url": orthanc.dicomweb_url,
            "username": TEST_USER[0],
            "password": TEST_USER[1],
            "timeout_s": "10",
            # the test Orthanc listens on loopback over plain http
            "allow_insecure_http": "true",
        }
    deliveries = Deliveries(args.target, outbox, orthanc)
    saved: set[str] = set()
    deleted: set[str] = set()
    deleting: set[str] = set()  # asked to delete, not acknowledged: may be there or not
    verified: set[str] = set()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    started = time.monotonic()
    try:
        for i in range(args.iterations):
            totals.iterations = i + 1
            child = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--child",
                    "--root",
                    str(root),
                    "--settings",
                    json.dumps(settings),
                    "--seed",
                    str(rng.randrange(1 << 30)),
                    "--pace",
                    str(args.pace),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            delay = rng.uniform(args.min_delay, args.max_delay)
            try:
                child.wait(timeout=delay)
                totals.child_exited_early += 1
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                totals.kills += 1
            out, err = child.communicate()
            if child.returncode not in (-signal.SIGKILL,):
                totals.inconsistencies += 1
                totals.problems.append(
                    f"iteration {i + 1}: child exited with {child.returncode}: "
                    f"{err.decode(errors='replace')[-1500:]}"
                )
            for line in out.decode(errors="replace").splitlines():
                word, _, cid = line.partition(" ")
                if word == "SAVED":
                    saved.add(cid)
                elif word == "DELETING":
                    deleting.add(cid)
                elif word == "DELETED":
                    deleted.add(cid)
            verify(root, saved, deleted, deleting, verified, deliveries, totals)
            if args.verbose or (i + 1) % 25 == 0:
                logger.info(
                    "%d/%d kills, %d saved, %d lost, %d duplicates, %d problems (%.0f s)",
                    totals.kills,
                    i + 1,
                    len(saved),
                    totals.captures_lost,
                    totals.duplicates,
                    totals.inconsistencies,
                    time.monotonic() - started,
                )
        totals.saved_acknowledged = len(saved)
        totals.deleted_acknowledged = len(deleted)
        drain_and_check(root, settings, deliveries, totals)
    finally:
        if orthanc is not None:
            orthanc.stop()
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--target", choices=("outbox", "dicomweb"), default="outbox")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--min-delay", type=float, default=0.05, help="seconds before the kill")
    parser.add_argument("--max-delay", type=float, default=1.2, help="seconds before the kill")
    parser.add_argument(
        "--pace", type=float, default=0.03, help="max seconds between captures in the child"
    )
    parser.add_argument("--report", type=Path, default=None, help="write the totals as JSON")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.ERROR)
        run_child(args.root, json.loads(args.settings), args.seed or 0, args.pace)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    logger.info("seed %d, %d iterations, target %s", args.seed, args.iterations, args.target)
    started = time.monotonic()
    totals = run_parent(args)
    summary = asdict(totals)
    summary["seed"] = args.seed
    summary["target"] = args.target
    summary["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text)
    ok = totals.captures_lost == 0 and totals.duplicates == 0 and totals.inconsistencies == 0
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
