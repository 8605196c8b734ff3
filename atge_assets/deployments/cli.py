"""`atge webhook-intake`: the Vercel webhook intake as a process of its own (`atge up` starts it
when ATGE_VERCEL_WEBHOOK_SECRET is set). The secret comes from the environment only, never from
the command line."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Sequence

from atge_assets.deployments.webhook_intake import DEFAULT_PATH, serve

log = logging.getLogger("atge_assets.deployments.webhook_intake")


def webhook_intake_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="atge webhook-intake",
                                description="receive Vercel deployment webhooks and queue them "
                                "for the deployment sensor")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8788)
    p.add_argument("--queue-url", default=os.environ.get("ATGE_HISTORY_URL"),
                   help="SQLAlchemy URL of the queue (default: $ATGE_HISTORY_URL)")
    p.add_argument("--path", default=DEFAULT_PATH)
    p.add_argument("--project-id", default=os.environ.get("VERCEL_PROJECT_ID"))
    args = p.parse_args(argv)
    secret = os.environ.get("ATGE_VERCEL_WEBHOOK_SECRET", "")
    if not args.queue_url:
        p.error("--queue-url or ATGE_HISTORY_URL is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = serve(args.host, args.port, args.queue_url, secret, path=args.path,
                   project_id=args.project_id)
    log.info("Vercel webhook intake on %s", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.queue.dispose()
    return 0
