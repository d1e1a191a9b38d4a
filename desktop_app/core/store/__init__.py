"""The capture store: every photo is on disk before anything else happens to it.

Public names are re-exported here (``from desktop_app.core.store import CaptureStore``); the
modules are :mod:`~.store` (:class:`CaptureStore`), :mod:`~.database` (opening, transactions,
audit), :mod:`~.reconcile` (start-up recovery), :mod:`~.queue_state` (submission bookkeeping),
:mod:`~.schema` (SQL schema, migrations, corruption vs unavailable), :mod:`~.journal` (state
journal), :mod:`~.durable` (atomic writes), :mod:`~.jpeg_privacy` (metadata stripping),
:mod:`~.records` (records, states, ids), :mod:`~.uids` (DICOM UIDs), :mod:`~.export` (training
CSV) and :mod:`~.errors`.
"""

from desktop_app.core.store.database import RESERVE_NAME
from desktop_app.core.store.durable import (
    TEMP_PREFIX,
    atomic_write_bytes,
    ensure_private_dir,
    fsync_dir,
    os_error_message,
)
from desktop_app.core.store.errors import (
    DiskFullError,
    StorageError,
    StoreUnavailableError,
    StoreUnavailableReason,
)
from desktop_app.core.store.export import REASON_PHRASES, reasons_named_in
from desktop_app.core.store.journal import JOURNAL_SUFFIX, append_journal_lines, read_journal
from desktop_app.core.store.jpeg_privacy import (
    JPEG_QUALITY,
    encode_jpeg,
    encode_png,
    prepare_image_bytes,
    strip_jpeg_metadata,
)
from desktop_app.core.store.records import (
    APP_NAME,
    CAPTURE_MODES,
    CAPTURE_STATES,
    DECISION_RATING,
    HOME_ENV,
    IMAGES_DIR,
    MISSING_IMAGE_PROBLEM,
    REVIEW_ACTIONS,
    CaptureInfo,
    CaptureRecord,
    DamagedRow,
    StartupReport,
    default_store_root,
    new_capture_id,
    storable_info,
    storable_text,
    utc_now,
)
from desktop_app.core.store.schema import (
    DB_NAME,
    SCHEMA_VERSION,
    is_database_corruption,
    store_unavailable,
)
from desktop_app.core.store.store import CaptureStore
from desktop_app.core.store.uids import derive_uids

__all__ = [
    "APP_NAME",
    "CAPTURE_MODES",
    "CAPTURE_STATES",
    "DB_NAME",
    "DECISION_RATING",
    "HOME_ENV",
    "IMAGES_DIR",
    "JOURNAL_SUFFIX",
    "JPEG_QUALITY",
    "MISSING_IMAGE_PROBLEM",
    "REASON_PHRASES",
    "RESERVE_NAME",
    "REVIEW_ACTIONS",
    "SCHEMA_VERSION",
    "TEMP_PREFIX",
    "CaptureInfo",
    "CaptureRecord",
    "CaptureStore",
    "DamagedRow",
    "DiskFullError",
    "StartupReport",
    "StorageError",
    "StoreUnavailableError",
    "StoreUnavailableReason",
    "append_journal_lines",
    "atomic_write_bytes",
    "default_store_root",
    "derive_uids",
    "encode_jpeg",
    "encode_png",
    "ensure_private_dir",
    "fsync_dir",
    "is_database_corruption",
    "new_capture_id",
    "os_error_message",
    "prepare_image_bytes",
    "read_journal",
    "reasons_named_in",
    "storable_info",
    "storable_text",
    "store_unavailable",
    "strip_jpeg_metadata",
    "utc_now",
]
