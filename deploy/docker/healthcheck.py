"""Container health check: exit 0 if http://127.0.0.1:$HTTP_PORT/health answers 2xx, else 1.

Copied into every image and run by its HEALTHCHECK; standard library only, so it works in any of them.
A service answers 503 while PostgreSQL or Kafka is unreachable, which makes the container unhealthy.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8000')}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:  # HTTPError (non-2xx) is a URLError
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
