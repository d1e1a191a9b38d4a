"""Getting accepted captures to the record exactly once: targets and a persistent retry queue.

Public names are re-exported here (``from desktop_app.core.submission import SubmissionQueue``);
the modules are :mod:`~.queue` (:class:`SubmissionQueue`, exactly-once and back-off),
:mod:`~.target` (the :class:`SubmissionTarget` protocol, errors), :mod:`~.outbox` (the outbox
folder), :mod:`~.dicom` (the DICOM instance and its content checks), :mod:`~.dicomweb` (STOW-RS),
:mod:`~.factory` (:func:`make_target` from settings), :mod:`~.policy` (the one submit rule) and
:mod:`~.credentials` (keyring password, credentials kept out of URLs).
"""

from desktop_app.core.submission.dicom import (
    PRIVATE_CAPTURE_ID,
    PRIVATE_CREATOR,
    PRIVATE_DECISION,
    PRIVATE_GROUP,
    PRIVATE_MODEL_VERSION,
    PRIVATE_REASONS,
    PRIVATE_SCORE,
    PRIVATE_THRESHOLD,
    VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    build_dicom,
    validate_patient_fields,
)
from desktop_app.core.submission.dicomweb import (
    CREDENTIALS_IN_URL_MESSAGE,
    INSECURE_HTTP_MESSAGE,
    DicomWebTarget,
)
from desktop_app.core.submission.factory import make_target
from desktop_app.core.submission.outbox import OutboxTarget, capture_metadata, default_outbox_folder
from desktop_app.core.submission.policy import (
    PRACTICE_SOURCE_MESSAGE,
    SENDABLE_STATES,
    is_practice_source,
    submit_blocker,
)
from desktop_app.core.submission.queue import (
    BASE_BACKOFF_S,
    MAX_BACKOFF_S,
    SEND_LEASE_S,
    QueueStatus,
    SubmissionQueue,
    backoff_seconds,
)
from desktop_app.core.submission.target import SubmissionError, SubmissionRefused, SubmissionTarget

__all__ = [
    "BASE_BACKOFF_S",
    "CREDENTIALS_IN_URL_MESSAGE",
    "INSECURE_HTTP_MESSAGE",
    "MAX_BACKOFF_S",
    "PRACTICE_SOURCE_MESSAGE",
    "PRIVATE_CAPTURE_ID",
    "PRIVATE_CREATOR",
    "PRIVATE_DECISION",
    "PRIVATE_GROUP",
    "PRIVATE_MODEL_VERSION",
    "PRIVATE_REASONS",
    "PRIVATE_SCORE",
    "PRIVATE_THRESHOLD",
    "SENDABLE_STATES",
    "SEND_LEASE_S",
    "VL_PHOTOGRAPHIC_IMAGE_STORAGE",
    "DicomWebTarget",
    "OutboxTarget",
    "QueueStatus",
    "SubmissionError",
    "SubmissionQueue",
    "SubmissionRefused",
    "SubmissionTarget",
    "backoff_seconds",
    "build_dicom",
    "capture_metadata",
    "default_outbox_folder",
    "is_practice_source",
    "make_target",
    "submit_blocker",
    "validate_patient_fields",
]
