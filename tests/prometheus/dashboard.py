#!/usr/bin/env python3
"""The Grafana dashboard's panel expressions, checked.

  dashboard.py DASHBOARD --rules FILE     write every expression as a recording rule, so that
                                          `promtool check rules FILE` parses them all offline
  dashboard.py DASHBOARD --query URL      run every expression against the Prometheus at URL;
                                          fails, listing them, when any returns no data

Grafana's variables are replaced as Grafana would with everything selected: $instance by .*,
$__rate_interval by 1m.
"""
import argparse
import json
import sys
import urllib.parse
import urllib.request

VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


def expressions(path):
    """(panel title, expression) for every query of every panel."""
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((panel["title"], expr))
    if not found:
        sys.exit(f"{path}: no panel has a query")
    return found


def write_rules(found, out):
    with open(out, "w", encoding="utf-8") as f:
        f.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, (_, expr) in enumerate(found):
            f.write(f"      - record: dashboard:expr_{i}\n        expr: {json.dumps(expr)}\n")


def query(url, expr):
    data = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", data, timeout=10) as response:
        answer = json.load(response)
    if answer.get("status") != "success":
        raise RuntimeError(answer)
    return answer["data"]["result"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dashboard")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rules", metavar="FILE")
    mode.add_argument("--query", metavar="URL")
    args = parser.parse_args()
    found = expressions(args.dashboard)
    if args.rules:
        write_rules(found, args.rules)
        return
    empty = []
    for title, expr in found:
        result = query(args.query, expr)
        if not result:
            empty.append(f"  {title}: {expr}")
    print(f"{len(found) - len(empty)} of {len(found)} panel expressions return data")
    if empty:
        sys.exit("no data for:\n" + "\n".join(empty))


if __name__ == "__main__":
    main()
