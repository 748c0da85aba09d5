# configset.awk -- set kubo config keys (dotted paths) to JSON values in one pass over the config kubo
# wrote, without starting kubo's CLI once per key (each start costs about a second under QEMU TCG).
# Used by kubo_config_set (lib/kubo.sh), for a kubo that refuses the one-start --init-config.
#
#   awk -v sets=FILE -v report=FILE -f configset.awk config > config.new
#
# `sets` has one "KEY<TAB>JSON" line per key; the value replaces the key's whole value, whether that
# is on one line ("Bootstrap": [],) or a container over several lines ("Provide": { ... }). kubo
# pretty-prints one key per line, a container opened at the end of its line and closed on a line of
# its own. The keys really set go to `report`, one per line: the caller sets any other one with
# `ipfs config --json`.
function keyof(line,    k) {
    if (!match(line, /^[ \t]*"[^"]+":/)) return ""
    k = substr(line, RSTART, RLENGTH)
    sub(/^[ \t]*"/, "", k)
    sub(/":$/, "", k)
    return k
}
function opens(line) { return line ~ /[{[][ \t]*$/ }
function closes(bare,    c) { c = substr(bare, 1, 1); return c == "}" || c == "]" }
BEGIN {
    while ((getline l < sets) > 0) {
        t = index(l, "\t")
        if (t > 1) want[substr(l, 1, t - 1)] = substr(l, t + 1)
    }
}
{
    line = $0
    bare = line
    gsub(/[ \t]/, "", bare)   # (busybox awk mishandles "\]" inside brackets: compare plain text)
    if (skip) {                # inside a container being replaced: drop it, keep its closing comma
        if (opens(line)) skip++
        else if (closes(bare)) {
            skip--
            if (!skip) print head ": " want[skipkey] ((bare ~ /,$/) ? "," : "")
        }
        next
    }
    k = keyof(line)
    if (k != "") {
        full = (depth && path[depth] != "") ? path[depth] "." k : k
        if (full in want) {
            done[full] = 1
            head = line
            sub(/:.*$/, "", head)
            if (opens(line)) { skip = 1; skipkey = full; next }
            print head ": " want[full] ((line ~ /,[ \t]*$/) ? "," : "")
            next
        }
        if (opens(line)) { depth++; path[depth] = full }
    } else if (bare == "}" || bare == "}," || bare == "]" || bare == "],") {
        depth--
    } else if (bare == "{" || bare == "[") {
        depth++; path[depth] = (depth > 1) ? path[depth - 1] "[]" : ""
    }
    print line
}
END {
    for (k in done) print k > report
}
