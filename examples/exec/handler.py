#!/usr/bin/env python3
"""A per-event exec handler for zulip-event-listeners (`mode = "per_event"`).

The daemon runs this script once per event, with the event's envelope as one
JSON object on stdin:

    {"listener": "...", "idempotency_key": "...", "attempt": 1,
     "inbox_id": 42, "received_at": "2026-12-01T10:00:00.000Z",
     "event": {...the event exactly as Zulip sent it...}}

and the same facts in ZEL_LISTENER, ZEL_IDEMPOTENCY_KEY, ZEL_ATTEMPT,
ZEL_INBOX_ID and ZEL_EVENT_TYPE. The exit status is the outcome:

    0    success
    75   a transient failure (EX_TEMPFAIL): the daemon retries the event
    else a permanent failure: the event is dead-lettered at once

and the last 4 KB of stderr become the run's error. A JSON object
{"content": "..."} on stdout is a reply, posted (exactly once) to the
conversation of the message. Anything else on stdout is ignored.

This one answers `!ping` with `pong` and counts the messages of each
channel in a JSON file (ZEL_STATE_FILE, default ./message-counts.json),
skipping the events it has already counted: delivery is at least once, so
a handler with side effects de-duplicates by the idempotency key. Runs of
different events overlap (up to the listener's `max_concurrent`), so the
read-modify-write of the file holds an exclusive lock on a file beside it;
without it two runs that read the same state lose one count.

Configure it as:

    [listeners.ping]
    kind = "exec"
    command = ["/usr/bin/python3", "/opt/handlers/handler.py"]
    event_types = ["message"]
    env = { ZEL_STATE_FILE = "/var/lib/handlers/counts.json" }
"""

import fcntl
import json
import os
import sys

EX_TEMPFAIL = 75


def count(envelope, channel):
    """Adds one to `channel`'s count, once per idempotency key."""
    path = os.environ.get("ZEL_STATE_FILE", "message-counts.json")
    try:
        lock = open(path + ".lock", "a")
    except OSError as e:
        print(f"cannot open {path}.lock: {e}", file=sys.stderr)
        sys.exit(EX_TEMPFAIL)
    with lock:
        # Released when the file closes, and by the kernel if the run is killed.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {"counts": {}, "seen": []}
        except (OSError, ValueError) as e:
            # Worth another try: the daemon retries with backoff.
            print(f"cannot read {path}: {e}", file=sys.stderr)
            sys.exit(EX_TEMPFAIL)
        key = envelope["idempotency_key"]
        if key in state["seen"]:
            return
        state["seen"] = (state["seen"] + [key])[-1000:]
        state["counts"][channel] = state["counts"].get(channel, 0) + 1
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)


def main():
    envelope = json.load(sys.stdin)
    event = envelope["event"]
    if event["type"] != "message":
        return
    message = event["message"]
    if message["type"] == "stream":
        count(envelope, message["display_recipient"])
    if message["content"].strip() == "!ping":
        print(json.dumps({"content": f"pong, @**{message['sender_full_name']}**"}))


if __name__ == "__main__":
    main()
