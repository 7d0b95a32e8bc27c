"""The operator console at `/ui/` (SPEC §16): static pages that call only the public `/v1` API.

The console is plain HTML, CSS and JavaScript modules under `static/`, with no build step and no
third-party asset; every rule (names, permissions, states) stays in the API it calls.
"""

from __future__ import annotations

from peering.ui.routes import install

__all__ = ["install"]
