#!/usr/bin/env python3
"""Parses Prometheus text exposition (a file, or stdin) with prometheus_client's parser and
prints {"metric family": "type", ...} as JSON; fails on text the parser rejects."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
print(json.dumps({f.name: f.type for f in text_string_to_metric_families(text)}))
