"""Per-rule job wall times from a snakemake log: python stage_spans.py LOG"""
import re, sys, datetime, collections
text = open(sys.argv[1]).read()
parts = re.split(r'^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$', text, flags=re.M)
start, rule_of, total = {}, {}, collections.defaultdict(float)
first = last = None
for stamp, body in zip(parts[1::2], parts[2::2]):
    t = datetime.datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y")
    first = first or t; last = t
    m = re.search(r'^(?:local)?rule (\w+):.*?jobid: (\d+)', body, flags=re.M | re.S)
    if m:
        start[m.group(2)] = t; rule_of[m.group(2)] = m.group(1)
    for j in re.findall(r'Finished job(?:id)?:? (\d+)', body):
        if j in start:
            total[rule_of[j]] += (t - start[j]).total_seconds()
print({k: round(v) for k, v in total.items()}, "sum", round(sum(total.values())), "span", (last - first).total_seconds())
