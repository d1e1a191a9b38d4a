"""DICOMweb submission against a real Orthanc (started per module on a free loopback port)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from orthanc_server import TEST_USER, OrthancServer, find_orthanc
from store_helpers import make_info, run_crash_script, smooth_image

from desktop_app.core.store import CaptureStore
from desktop_app.core.submission import (
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    DicomWebTarget,
    SubmissionQueue,
)

pytestmark = pytest.mark.orthanc


def _start_server(workdir: Path) -> OrthancServer:
    found = find_orthanc()
    if isinstance(found, str):
        pytest.skip(f"DICOMweb tests need Orthanc: {found}")
    server = OrthancServer(workdir, *found)
    server.start()
    return server


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    server = _start_server(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


def _wado_instance(server: OrthancServer, study: str, series: str, sop: str) -> bytes:
    """WADO-RS retrieve of one instance as application/dicom; returns the Part 10 bytes."""
    import requests

    r = requests.get(
        f"{server.dicomweb_url}/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
        auth=TEST_USER,
        timeout=10,
    )
    r.raise_for_status()
    boundary = r.headers["Content-Type"].split("boundary=")[1].split(";")[0].strip('"')
    parts = r.content.split(f"--{boundary}".encode())
    bodies = [p.split(b"\r\n\r\n", 1)[1] for p in parts if b"\r\n\r\n" in p]
    assert len(bodies) == 1
    return bodies[0].rstrip(b"\r\n")


def _qido(server: OrthancServer, path: str, **params: str) -> list[dict]:
    import requests

    r = requests.get(
        f"{server.dicomweb_url}{path}",
        params=params,
        headers={"Accept": "application/dicom+json"},
        auth=TEST_USER,
        timeout=10,
    )
    r.raise_for_status()
    return list(r.json()) if r.content else []


def test_submitted_instance_reads_back_with_pixels_and_tags(
    orthanc: OrthancServer, store: CaptureStore
) -> None:
    import pydicom

    target = DicomWebTarget(orthanc.dicomweb_url, auth=TEST_USER)
    queue = SubmissionQueue(store, target)
    info = make_info(
        patient_ref="PAT-4711",
        body_site="Forearm (left)",
        operator="Zoë Operator",
        score=0.8731,
        reasons={"blur": 0.12, "dark": 0.03},
    )
    record = store.add(smooth_image(60, 80, seed=11), info)
    queue.enqueue(record.id)
    status = queue.process_pending()
    assert status.submitted == 1, status
    done = store.get(record.id)
    assert done.state == "submitted" and done.remote_uid == record.sop_instance_uid

    found = _qido(orthanc, "/instances", PatientID="PAT-4711")
    assert [i["00080018"]["Value"][0] for i in found] == [record.sop_instance_uid]
    assert found[0]["0020000D"]["Value"][0] == record.study_uid

    ds = pydicom.dcmread(
        io.BytesIO(
            _wado_instance(orthanc, record.study_uid, record.series_uid, record.sop_instance_uid)
        )
    )
    assert np.array_equal(ds.pixel_array, store.load_image(record.id))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.4"
    assert ds.PatientID == "PAT-4711"
    (region,) = ds.AnatomicRegionSequence  # CID 4031 Forearm, laterality Left (CID 244)
    assert (region.CodeValue, region.CodingSchemeDesignator) == ("14975008", "SCT")
    assert region.AnatomicRegionModifierSequence[0].CodeValue == "7771000"
    assert ds.ImageLaterality == "L" and ds.StudyID.startswith("SC")
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
        record.study_uid,
        record.series_uid,
        record.sop_instance_uid,
    )
    created = datetime.fromisoformat(record.created_utc)
    assert ds.AcquisitionDateTime == created.strftime("%Y%m%d%H%M%S.%f") + "+0000"
    assert ds.AcquisitionDate == created.strftime("%Y%m%d")
    assert str(ds.OperatorsName) == "Zoë Operator^"  # PN form: all of it the family name
    assert "Quality score 0.8731" in ds.ImageComments
    assert "model test-model-1" in ds.ImageComments
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    assert block[0x01].value == pytest.approx(0.8731)
    assert block[0x02].value == pytest.approx(0.5)
    assert block[0x03].value == "test-model-1"
    assert json.loads(block[0x05].value) == {"blur": 0.12, "dark": 0.03}
    assert block[0x06].value == record.id


def test_resend_after_crash_stores_the_instance_once(
    orthanc: OrthancServer, store: CaptureStore
) -> None:
    target = DicomWebTarget(orthanc.dicomweb_url, auth=TEST_USER)
    record = store.add(smooth_image(seed=12), make_info(patient_ref="PAT-RESEND"))
    before = len(orthanc.instance_ids())
    # What a crash between "server stored it" and "row says submitted" leads to: a second send.
    assert target.submit(record, record.image_path) == record.sop_instance_uid
    assert target.submit(record, record.image_path) == record.sop_instance_uid
    assert len(orthanc.instance_ids()) == before + 1
    assert orthanc.sop_instance_uids().count(record.sop_instance_uid) == 1


def test_wrong_password_fails_clearly_then_retry_succeeds(
    orthanc: OrthancServer, store: CaptureStore
) -> None:
    record = store.add(smooth_image(seed=13), make_info(patient_ref="PAT-AUTH"))
    bad = SubmissionQueue(store, DicomWebTarget(orthanc.dicomweb_url, auth=("scatester", "x")))
    bad.enqueue(record.id)
    status = bad.process_pending()
    assert status.failed == 1 and "refused the login (HTTP 401)" in str(status.last_error)
    good = SubmissionQueue(store, DicomWebTarget(orthanc.dicomweb_url, auth=TEST_USER))
    assert good.retry_failed() == 1
    assert good.process_pending().submitted == 1


def test_server_down_captures_queue_and_are_delivered_when_it_returns(tmp_path: Path) -> None:
    server = _start_server(tmp_path / "orthanc")
    now = [datetime(2030, 6, 1, 9, 0, tzinfo=UTC)]
    store = CaptureStore(tmp_path / "store")
    try:
        queue = SubmissionQueue(
            store, DicomWebTarget(server.dicomweb_url, timeout_s=3, auth=TEST_USER), lambda: now[0]
        )
        server.stop()
        ids = [
            store.add(smooth_image(seed=20 + i), make_info(patient_ref=f"PAT-DOWN-{i}")).id
            for i in range(3)
        ]
        for cid in ids:
            queue.enqueue(cid)
        for _ in range(3):  # a few passes while the server is down: nothing raises
            status = queue.process_pending()
            now[0] += timedelta(seconds=30)
        assert status.queued == 3 and status.submitted == 0
        assert "cannot be reached" in str(status.last_error)
        # the oldest is retried with backoff; the pass stops at the first network failure
        assert store.get(ids[0]).submission_attempts == 3
        assert all(store.get(cid).state == "queued" for cid in ids)
        store.close()  # the app is restarted while the server is still down
        server.start()
        store = CaptureStore(tmp_path / "store")
        queue = SubmissionQueue(
            store, DicomWebTarget(server.dicomweb_url, timeout_s=3, auth=TEST_USER), lambda: now[0]
        )
        now[0] += timedelta(minutes=20)
        status = queue.process_pending()
        assert (status.queued, status.submitted, status.failed) == (0, 3, 0)
        assert sorted(server.sop_instance_uids()) == sorted(
            store.get(cid).sop_instance_uid for cid in ids
        )
    finally:
        store.close()
        server.stop()


@pytest.mark.slow
def test_crash_test_against_orthanc(tmp_path: Path) -> None:
    """SIGKILL the capture-and-submit process while it sends to Orthanc (15 kills)."""
    if isinstance(find_orthanc(), str):
        pytest.skip(f"needs Orthanc: {find_orthanc()}")
    totals, returncode = run_crash_script(
        tmp_path, "--iterations", "15", "--target", "dicomweb", "--seed", "6", timeout_s=120
    )
    assert totals["kills"] == 15
    assert totals["captures_lost"] == 0
    assert totals["duplicates"] == 0
    assert totals["inconsistencies"] == 0, totals["problems"][:5]
    assert totals["delivered"] > 0
    assert returncode == 0
