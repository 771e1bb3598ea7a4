#!/usr/bin/env python3
"""Exit 0 if radiomicsd's /healthz answers 200, else 1: the image's HEALTHCHECK and the
Kubernetes probe. A script rather than an inline `python3 -c` so that every runtime passes it
through unchanged (podman 4's kube play re-splits exec probe arguments at spaces).
Usage: radiomicsd-healthcheck [URL]   (default http://127.0.0.1:9108/healthz)"""

import sys
import urllib.error
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9108/healthz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except (urllib.error.URLError, OSError) as exc:
    print(f"radiomicsd unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
