"""A service written in Python with redis-py, sharing the keyspace.

It does what a typical hand-written service does, then reports what it
read, as JSON on stdout, for tests/interop.rs to check:

  write   stores build `py1` the way such services usually do: every value
          a string, `None` as an empty string, a field of its own that the
          Rust type does not declare, and the sorted index entry by hand.
  read    reads build `rs1` (written by Rust), its index entry and the
          outbox stream entry, and prints them.
"""
import json
import os
import sys

import redis


def main() -> None:
    r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    command = sys.argv[1]
    if command == "write":
        build = {
            "id": "py1",
            "user_id": "u1",
            "status": "Running",  # a spelling other than the stored `running`
            "started_at": "1700000000000",
            "finished_at": None,  # no value yet
            "exit_code": None,
            "runner_host": "ci-7",  # a field only this service knows
        }
        mapping = {k: ("" if v is None else v) for k, v in build.items()}
        pipe = r.pipeline(transaction=True)
        pipe.hset("build:py1", mapping=mapping)
        pipe.zadd("builds:user:u1", {"py1": int(build["started_at"])})
        pipe.execute()
        print(json.dumps({"ok": True}))
    elif command == "read":
        print(
            json.dumps(
                {
                    "hash": r.hgetall("build:rs1"),
                    "index": r.zrange("builds:user:u1", 0, -1, withscores=True),
                    "stream": [fields for _, fields in r.xrange("builds:stream")],
                    "py1": r.hgetall("build:py1"),
                }
            )
        )
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
