#!/usr/bin/env python3
"""A persistent exec handler for zulip-event-listeners (`mode = "persistent"`).

The daemon starts this script once and keeps it running. It writes one
request per line on stdin, the event's envelope with an "id":

    {"id": 7, "listener": "...", "idempotency_key": "...", "attempt": 1,
     "inbox_id": 42, "received_at": "...", "event": {...}}

and reads one response per line on stdout, in any order:

    {"id": 7, "ok": true}                          success
    {"id": 7, "ok": true, "content": "..."}        success, and a reply
    {"id": 7, "ok": false, "transient": true, "error": "..."}   retried
    {"id": 7, "ok": false, "error": "..."}         dead-lettered

Up to the instance's `max_concurrent` requests are in flight at once. If the
script dies, the daemon restarts it (with backoff) and retries the requests
it had in flight. Write logs to stderr: the daemon forwards them to its log.
Never write anything but responses to stdout.

This one answers `!ping` with `pong` and `!echo TEXT` with TEXT; every
other event succeeds without a reply.

Configure it as:

    [listeners.bot]
    kind = "exec"
    mode = "persistent"
    command = ["/usr/bin/python3", "/opt/handlers/persistent.py"]
    max_concurrent = 16
"""

import json
import sys


class Retry(Exception):
    """A failure worth retrying (a service that is down, say)."""


def handle(request):
    """The response fields for one request (besides its id)."""
    event = request["event"]
    if event["type"] != "message":
        return {}
    content = event["message"]["content"].strip()
    if content == "!ping":
        return {"content": "pong"}
    if content.startswith("!echo "):
        return {"content": content[len("!echo "):]}
    return {}


def main():
    for line in sys.stdin:
        request = json.loads(line)
        try:
            response = {"id": request["id"], "ok": True, **handle(request)}
        except Retry as e:
            response = {"id": request["id"], "ok": False, "transient": True, "error": str(e)}
        except Exception as e:  # a bug: retrying will not help
            response = {"id": request["id"], "ok": False, "error": repr(e)}
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
