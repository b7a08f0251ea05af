# summary.awk: the closing lines of abc.sh, from its rows (AB_DIR/abc-rows.txt): each command's
# medians (server CPU, its user part, the whole machine's busy CPU, req/s) and the medians, with
# their ranges, of its per-round ratios to a base command (server CPU, machine CPU). The base is
# the first command, or another with `-v base=NAME`, to divide by any contender of the same run:
#   awk -v base=fe -f benches/ab/summary.awk /tmp/uring-ab/abc-rows.txt
# sorted(list, a): splits the space-separated numbers of list into a[1..n] in ascending order;
# returns n.
function sorted(list, a,   n, i, j, t) {
  n = split(list, a, " ")
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n
}
function median(list,   a, n) {
  n = sorted(list, a)
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
# The range of list, as "lo–hi" with two decimals.
function span(list,   a, n) {
  n = sorted(list, a)
  return sprintf("%.2f–%.2f", a[1], a[n])
}
{ delete v; for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  # A row without figures (from before abc.sh left failed rounds out) is not a 0.
  if (v["cpu"] == "") next
  name = $1; if (!(name in seen)) { seen[name] = 1; order[++k] = name }
  cpu[name] = cpu[name] " " v["cpu"]; user[name] = user[name] " " v["user"]; rps[name] = rps[name] " " v["rps"]
  machine[name] = machine[name] " " v["machine"]
  round_cpu[name, v["round"]] = v["cpu"]; round_machine[name, v["round"]] = v["machine"]
  rounds[v["round"]] = 1 }
END {
  if (base == "") base = order[1]
  if (!(base in seen)) { print "summary.awk: no command named " base " in the rows" > "/dev/stderr"; exit 1 }
  for (i = 1; i <= k; i++) {
    n = order[i]; ratios = ""; mratios = ""
    for (r in rounds) if ((n, r) in round_cpu && (base, r) in round_cpu) {
      ratios = ratios " " round_cpu[n, r] / round_cpu[base, r]
      if (round_machine[base, r] > 0)
        mratios = mratios " " round_machine[n, r] / round_machine[base, r]
    }
    printf "median %s: cpu=%.3f user=%.3f machine=%.3f rps=%.0f; ", n, median(cpu[n]), median(user[n]),
      median(machine[n]), median(rps[n])
    printf "cpu ÷ %s in the same round: %.3f (%s), ", base, median(ratios), span(ratios)
    printf "machine: %.3f\n", median(mratios)
  }
}
