"""`python -m bridge.healthcheck`: the container HEALTHCHECK (exit 0 only when /health says healthy)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """Ask the bridge's own /health on loopback."""
    port = os.environ.get("BRIDGE_PORT", "8080")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
