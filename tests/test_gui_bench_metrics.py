"""The GUI bench's cue latency arithmetic (no GUI: a made-up record of what was on screen)."""

from __future__ import annotations

import pytest

from desktop_app.qt.gui_bench import cue_latencies, expected_messages

SCHEDULE = (("good", 2.0), ("glare", 1.0), ("far", 1.0))


def test_latency_is_from_each_change_to_the_first_right_message() -> None:
    expected = expected_messages()
    good, glare, far = (expected[m][0] for m in ("good", "glare", "far"))
    samples: list[tuple[float, str]] = []
    t = 0.0
    while t < 8.0:  # two cycles sampled every 10 ms; the screen is 150 ms late
        seen = (t - 0.15) % 4.0
        text = good if seen < 2.0 else glare if seen < 3.0 else far
        if 6.0 <= t < 7.0:
            text = "Checking the picture…"  # the second cycle's glare never shown
        samples.append((t, text))
        t += 0.01
    latencies, missed = cue_latencies(samples, 0.0, SCHEDULE, expected)  # type: ignore[arg-type]
    # changes with samples over their whole moment: 0.0 good, 2.0 glare, 3.0 far, 4.0 good,
    # 6.0 glare (missed: counted as its whole moment, 1 s, a lower bound); 7.0 far ends after
    # the record
    assert missed == 1
    assert latencies == pytest.approx([150.0] * 4 + [1000.0], abs=11.0)
