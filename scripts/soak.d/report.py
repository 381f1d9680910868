"""The soak's report (markdown tables) and its verdict."""

import collections

RSS_GROWTH = 1.10  # end RSS at most 110% of the after-warm-up value ...
RSS_SLACK_KIB = 4096  # ... plus 4 MiB (allocator arenas of two workers settling)


def _table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fault_label(f):
    target = f.member or f.note or ""
    return f"{f.kind} {target}".strip()


def build(ledger, watch_results, resources, minutes, extra_problems):
    """Returns (markdown text, list of problems that fail the run)."""
    problems = list(extra_problems)
    lines = [f"# sidemux soak: {minutes:g} minutes", ""]

    # calls ------------------------------------------------------------------
    explained = collections.Counter()
    causes = collections.Counter()
    details = collections.Counter()
    unexplained = []
    for c in ledger.failures:
        f, code_ok = ledger.explain(c)
        if f is None or not code_ok:
            unexplained.append(c)
            cause = "UNEXPLAINED" if f is None else f"{fault_label(f)}: wrong status (SPEC: {'/'.join(sorted(f.codes))})"
        else:
            explained[c.kind] += 1
            cause = fault_label(f)
        causes[(cause, c.kind, c.code)] += 1
        details[(cause, c.kind, c.code, c.detail[:160].replace("|", "/"))] += 1
    failed = collections.Counter(c.kind for c in ledger.failures)
    rows = [(k, ledger.made[k], failed[k], explained[k], failed[k] - explained[k]) for k in sorted(ledger.made)]
    total = ("all", sum(ledger.made.values()), len(ledger.failures), sum(explained.values()), len(unexplained))
    lines += ["## Calls", "", _table(("kind", "made", "failed", "explained", "unexplained"), rows + [total]), ""]
    if causes:
        rows = [(cause, kind, code, n) for (cause, kind, code), n in sorted(causes.items())]
        lines += ["## Failures by cause", "", _table(("cause (fault in flight)", "kind", "code", "count"), rows), ""]
        rows = [(cause, kind, code, n, detail) for (cause, kind, code, detail), n in sorted(details.items())[:40]]
        lines += ["## Failure messages", "", _table(("cause", "kind", "code", "count", "error"), rows), ""]
    if unexplained:
        problems.append(f"{len(unexplained)} unexplained failures (no fault in flight, or a status the SPEC "
                        "does not give for it)")
        rows = [(f"{ledger.rel(c.start):.1f}-{ledger.rel(c.end):.1f}", c.kind, c.code, c.member or "",
                 c.detail.replace("|", "/")) for c in unexplained[:40]]
        lines += ["## Unexplained failures and wrong statuses (first 40)", "",
                  _table(("t (s)", "kind", "code", "member", "error"), rows), ""]

    # faults -------------------------------------------------------------------
    rows = []
    for f in ledger.faults:
        rows.append((f"{ledger.rel(f.start):.1f}", fault_label(f), f"{(f.end or f.start) - f.start:.1f}",
                     (f.outcome if not f.error else f"ERROR {f.error}").replace("|", "/")))
        if f.error:
            problems.append(f"fault {fault_label(f)} could not be carried out: {f.error}")
    lines += ["## Faults", "", _table(("t (s)", "fault", "took (s)", "outcome"), rows), ""]
    for t, text in ledger.notes:
        problems.append(text)

    # watches ------------------------------------------------------------------
    rows = []
    for w in watch_results:
        rows.append((w["name"], w["start_rev"], w["expected"], w["received"], w["lost"], w["unexpected"],
                     w["out_of_order"], w["streams"]))
        if w["lost"] or w["unexpected"] or w["out_of_order"]:
            problems.append(f"watch {w['name']}: {w['lost']} lost, {w['unexpected']} unexpected, "
                            f"{w['out_of_order']} out of order (first lost: {w['first_lost']})")
    lines += ["## Watch events", "", _table(("watch", "from rev", "expected", "received", "lost", "unexpected",
                                              "out of order", "streams (1 + resumes)"), rows), ""]

    # resources ------------------------------------------------------------------
    rows = []
    for r in resources:
        s, w, e = r["start"], r["warm"], r["end"]
        rows.append((r["name"], f"{s.rss_kib / 1024:.1f}", f"{w.rss_kib / 1024:.1f}", f"{r['max_rss'] / 1024:.1f}",
                     f"{e.rss_kib / 1024:.1f}", s.fds, w.fds, r["max_fds"], e.fds,
                     f"{r['fd_base']} / {r['fd_end']}", f"{e.cpu_s - s.cpu_s:.1f}"))
        bound = RSS_GROWTH * w.rss_kib + RSS_SLACK_KIB
        if e.rss_kib > bound:
            problems.append(f"{r['name']}: RSS at end {e.rss_kib} KiB > {bound:.0f} KiB "
                            f"(110% of {w.rss_kib} KiB after warm-up + {RSS_SLACK_KIB} KiB)")
        if r["fd_end"] > r["fd_base"]:
            problems.append(f"{r['name']}: {r['fd_end']} fds not held by member connections at end, "
                            f"{r['fd_base']} at start")
    lines += ["## sidemux resources (RSS MiB, fds; sampled every 10 s)", "",
              _table(("process", "RSS start", "RSS warm-up", "RSS max", "RSS end", "fds start", "fds warm-up",
                      "fds max", "fds end", "fds minus member conns start / end", "CPU s"), rows), "",
              f"Bounds: RSS end <= {RSS_GROWTH:.0%} of warm-up + {RSS_SLACK_KIB // 1024} MiB; fds minus "
              "sidemux_upstream_connections_active back to the start value.", ""]
    for r in resources:
        lines += [f"RSS MiB of {r['name']}, in order: " +
                  " ".join(f"{s.rss_kib / 1024:.1f}" for s in r["samples"]), ""]

    lines += ["## Verdict", ""]
    lines += [f"- FAIL: {p}" for p in problems] or ["- PASS: no unexplained failure, no lost watch event, "
                                                      "RSS and fds within bounds"]
    return "\n".join(lines) + "\n", problems
