# Turns a callgrind profile of sidemux into the markdown callgrind section of
# scripts/bench's report.
#   awk -v n=REQUESTS -v rps=REQ_PER_S -f callgrind-report.awk SELF INCL RAW
# SELF and INCL: `callgrind_annotate --auto=no --threshold=100` listings with
# --inclusive=no and --inclusive=yes; RAW: the callgrind dump itself, read for
# call counts (allocations per request and who makes them).
# Self costs are summed per function: with debug info callgrind splits a
# function by the file its inlined code came from. Entries costing >= 99% of the total
# are the thread and loop entry points that were on the stack when the
# counters were zeroed: skipped. Plain POSIX awk (Debian's default is mawk).

function num(s) { gsub(/,/, "", s); return s + 0 }

# "file:function [object]" -> function without its parameter list.
function fname(s,    depth, i, c) {
  sub(/ \[[^]]*\]$/, "", s)
  sub(/^[^:]*:/, "", s)
  sub(/ \[clone [^]]*\]$/, "", s)
  sub(/'[0-9]+$/, "", s)
  gsub(/std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >/, "std::string", s)
  gsub(/std::basic_string_view<char, std::char_traits<char> >/, "std::string_view", s)
  gsub(/, std::allocator<[^<>]*> >/, ">", s)
  gsub(/, std::default_delete<[^<>]*> >/, ">", s)
  if (s ~ /\)$/) {
    depth = 0
    for (i = length(s); i > 0; i--) {
      c = substr(s, i, 1)
      if (c == ")") depth++
      else if (c == "(") { depth--; if (depth == 0) break }
    }
    if (i > 1) s = substr(s, 1, i - 1)
  }
  gsub(/\|/, "\\|", s)
  return s
}

function short_object(o) {
  sub(/.*\//, "", o)
  sub(/\.so(\.[0-9]+)*$/, ".so", o)
  return o
}

# The object of a listing line. Lines for inlined code may lack it: glibc's
# own sources are built from "./..." paths, the rest is sidemux's.
function object(s) {
  if (match(s, /\[[^]]*\]$/)) return short_object(substr(s, RSTART + 1, RLENGTH - 2))
  return s ~ /^\.\// ? "libc.so" : "sidemux"
}

function share(v) { return total > 0 ? 100 * v / total : 0 }

# Fills order[1..k] with the keys of arr by decreasing value; returns k.
function sort_keys(arr, order,    k, i, j, key) {
  k = 0
  for (key in arr) order[++k] = key
  for (i = 2; i <= k; i++) {
    key = order[i]
    for (j = i - 1; j >= 1 && arr[order[j]] < arr[key]; j--) order[j + 1] = order[j]
    order[j + 1] = key
  }
  return k
}

FNR == 1 { part++ }

# The raw dump: names are compressed to "(id)" after their first use.
part == 3 {
  if (match($0, /^c?(fn|ob)=\([0-9]+\)/)) {
    id = substr($0, index($0, "(") + 1)
    id = substr(id, 1, index(id, ")") - 1)
    rest = substr($0, RLENGTH + 1)
    kind = ($0 ~ /^c?ob=/) ? "ob" : "fn"
    if (rest ~ /^ /) names[kind, id] = substr(rest, 2)
    if ($0 ~ /^ob=/) {
      cur_ob = short_object(names["ob", id])
    } else if ($0 ~ /^fn=/) {
      caller = names["fn", id]
      caller_ob[caller] = cur_ob
    } else if ($0 ~ /^cfn=/) {
      callee = names["fn", id]
    }
  } else if ($0 ~ /^calls=/) {
    split(substr($0, 7), c, " ")
    calls[callee] += c[1]
    if ((callee == "malloc" || callee ~ /^operator new\(/) && caller !~ /^operator new\(/)
      allocs_by[caller] += c[1]
  }
  next
}

/PROGRAM TOTALS/ { total = num($1); next }

# The function list runs from its "file:function" header to a blank line.
/file:function$/ { in_list = 1; next }
in_list && /^$/ { in_list = 0; next }

in_list && /^ *[0-9][0-9,]* \( *[0-9.]+%\)  / {
  v = num($1)
  line = $0
  sub(/^ *[0-9,]+ \( *[0-9.]+%\)  /, "", line)
  if (total > 0 && v >= 0.99 * total) next
  f = fname(line)
  o = object(line)
  if (part == 1) {
    self[f " [" o "]"] += v
    by_obj[o] += v
    if (f ~ /^__mem(cpy|move)/) copy += v
    if (f ~ /^(malloc|_int_malloc|free|_int_free|cfree|realloc|_int_realloc|calloc|malloc_consolidate|operator new|operator delete)$/)
      alloc += v
  } else if (o == "sidemux" && v > incl[f]) {
    # Largest, not the sum: a recursive function's copies nest.
    incl[f] = v
  }
}

END {
  if (n <= 0) n = 1
  printf "## callgrind: sidemux under valgrind, %d requests after warm-up\n\n", n
  printf "- instructions (Ir) in the profiled window: %.0f, **%.0f Ir per request**", total, total / n
  printf " (h2load saw %.0f req/s under callgrind)\n", rps
  printf "- kernel time is not counted: syscalls show only as their libc/libuv wrappers\n"
  printf "- by object (self Ir):"
  k = sort_keys(by_obj, objs)
  sep = ""
  for (i = 1; i <= k; i++) {
    if (share(by_obj[objs[i]]) < 0.5) continue
    printf "%s %s %.1f%% (%.0f/req)", sep, objs[i], share(by_obj[objs[i]]), by_obj[objs[i]] / n
    sep = ","
  }
  printf "\n"
  printf "- allocator (malloc/free/new/delete, self): %.1f%%, %.0f Ir/req; %.1f malloc calls per request\n", \
    share(alloc), alloc / n, calls["malloc"] / n
  printf "- memcpy/memmove (self): %.1f%%\n\n", share(copy)

  printf "Top functions by self Ir (libnghttp2's show as addresses: no debug symbols):\n\n"
  printf "| Ir/request | share | function | object |\n|---:|---:|---|---|\n"
  k = sort_keys(self, order)
  for (i = 1; i <= k && i <= 15; i++) {
    key = order[i]
    o = key
    sub(/.* \[/, "", o)
    sub(/\]$/, "", o)
    f = substr(key, 1, length(key) - length(o) - 3)
    printf "| %.0f | %.1f%% | `%s` | %s |\n", self[key] / n, share(self[key]), f, o
  }

  printf "\nWho allocates (direct calls to malloc or operator new, per request):\n\n"
  printf "| allocations/request | caller | object |\n|---:|---|---|\n"
  k = sort_keys(allocs_by, callers)
  for (i = 1; i <= k && i <= 10; i++) {
    if (allocs_by[callers[i]] / n < 0.05) break
    printf "| %.1f | `%s` | %s |\n", allocs_by[callers[i]] / n, fname(":" callers[i]), caller_ob[callers[i]]
  }

  printf "\nsidemux's own functions by inclusive Ir (callees included):\n\n"
  printf "| Ir/request | share | function |\n|---:|---:|---|\n"
  k = sort_keys(incl, order2)
  for (i = 1; i <= k && i <= 25; i++)
    printf "| %.0f | %.1f%% | `%s` |\n", incl[order2[i]] / n, share(incl[order2[i]]), order2[i]
}
