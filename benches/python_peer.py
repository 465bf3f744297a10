"""The Python-client peer of the pipeline benchmark (benches/pipeline/peer.rs).

What a listener written on the official bindings does: the `zulip`
package's Client polls a queue with get_events, and each event is stored
with one INSERT through psycopg (v3), committed on its own (autocommit,
synchronous_commit as the server has it) before the next poll
acknowledges it. Run by the benchmark, from the virtualenv its set-up
makes under target/:

    python_peer.py ZULIPRC QUEUE_ID N DSN

It reads the queue from its start until N message events are stored and
prints one JSON line: events, seconds (from the first answer to the last
commit) and its own CPU seconds.
"""

import json
import sys
import time

import psycopg
import zulip


def main() -> None:
    zuliprc, queue_id, n, dsn = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    client = zulip.Client(config_file=zuliprc)
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS peer_events ("
        " id BIGSERIAL PRIMARY KEY, event_id BIGINT NOT NULL UNIQUE,"
        " event_type TEXT NOT NULL, message_id BIGINT, raw TEXT NOT NULL,"
        " received_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    last_event_id = -1
    stored = 0
    started = None
    while stored < n:
        answer = client.get_events(queue_id=queue_id, last_event_id=last_event_id)
        if answer.get("result") != "success":
            raise SystemExit(f"get_events failed: {answer}")
        if started is None:
            started = time.monotonic()
        for event in answer["events"]:
            if event["type"] == "message":
                conn.execute(
                    "INSERT INTO peer_events (event_id, event_type, message_id, raw)"
                    " VALUES (%s, %s, %s, %s)",
                    (event["id"], event["type"], event["message"]["id"], json.dumps(event)),
                )
                stored += 1
            last_event_id = max(last_event_id, event["id"])
    seconds = time.monotonic() - (started or time.monotonic())
    print(json.dumps({"events": stored, "seconds": seconds, "cpu_s": time.process_time()}))


if __name__ == "__main__":
    main()
