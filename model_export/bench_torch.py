"""``python -m model_export.bench_torch``: kept because desktop_app/core/bench.py starts the
PyTorch reference benchmark under this name; the code is :mod:`model_export.bench.bench_torch`."""

from model_export.bench.bench_torch import main

if __name__ == "__main__":
    raise SystemExit(main())
