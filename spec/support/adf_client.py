#!/usr/bin/env python3
"""Reads an entity through the gateway the way Azure Data Factory's REST connector does: a GET with the key
in a header, then the pagination rule AbsoluteUrl = $.d.__next, followed as an absolute URL until the answer
has no __next. Prints one JSON line: pages, rows, distinct IDs, every __next's origin, statuses.

    python3 adf_client.py URL KEY [DUMP]      (DUMP: every answer's headers and body, for a secrets grep)
"""
import json
import sys
import urllib.parse
import urllib.request


def main():
    url, key = sys.argv[1], sys.argv[2]
    dump = open(sys.argv[3], "wb") if len(sys.argv) > 3 else None
    pages = rows = 0
    ids, origins, statuses = set(), set(), []
    while url:
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + key, "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            statuses.append(resp.status)
            raw = resp.read()
            if dump:
                dump.write(str(resp.headers).encode() + b"\n" + raw + b"\n")
            doc = json.loads(raw)
        results = doc["d"]["results"]
        pages += 1
        rows += len(results)
        ids.update(r["ID"] for r in results)
        url = doc["d"].get("__next")
        if url:
            p = urllib.parse.urlsplit(url)
            origins.add(p.scheme + "://" + p.netloc)
    print(json.dumps({"pages": pages, "rows": rows, "ids": len(ids), "origins": sorted(origins),
                      "statuses": sorted(set(statuses))}))


if __name__ == "__main__":
    main()
