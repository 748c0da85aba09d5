# kuboconf.awk -- set the keys the hook needs in the config `ipfs init --profile=test,lowpower` wrote,
# without starting kubo's CLI once per key (each start costs about a second under QEMU TCG).
#
# kubo pretty-prints its JSON config: one key per line, containers opened at the end of a line and
# closed on a line of their own. We follow the key path on that basis and rewrite:
#   Addresses.Swarm         -> [ swarm ]
#   Routing.Type            -> routing
#   Discovery.MDNS.Enabled  -> mdns
#   Peering.Peers           -> peers (a JSON array; only when given)
#   Swarm.Transports.Security -> security (a JSON object, e.g. {"TLS": false}; only when given)
#   Swarm.ConnMgr.LowWater, .HighWater -> connlow, connhigh (the lowpower profile writes both)
#   Swarm.ResourceMgr       -> rcmgr (a JSON object; only when given and kubo wrote it empty)
#   Experimental.FilestoreEnabled -> filestore (true or false)
# The keys really rewritten are written to the file named by `report`, one per line: the caller checks
# them and falls back to `ipfs config` if the layout ever differs.
function keyof(line,    k) {
    if (!match(line, /^[ \t]*"[^"]+":/)) return ""
    k = substr(line, RSTART, RLENGTH)
    sub(/^[ \t]*"/, "", k)
    sub(/":$/, "", k)
    return k
}
function setval(line, value,    comma) {
    comma = (line ~ /,[ \t]*$/) ? "," : ""
    sub(/:.*$/, ": " value comma, line)
    return line
}
function done(k) { edited[k] = 1 }
{
    line = $0
    bare = line
    gsub(/[ \t]/, "", bare)   # (busybox awk mishandles "\]" inside brackets: compare plain text)
    if (skip) {
        if (bare == "]" || bare == "],") { skip = 0; depth--; print line }
        next
    }
    k = keyof(line)
    if (k != "") {
        full = (depth && path[depth] != "") ? path[depth] "." k : k
        if (full == "Addresses.Swarm" && line ~ /\[[ \t]*$/) {
            indent = line; sub(/[^ \t].*$/, "", indent)
            print line
            print indent "  \"" swarm "\""
            depth++; path[depth] = full; skip = 1; done(full)
            next
        }
        if (full == "Routing.Type" && routing != "") { line = setval(line, "\"" routing "\""); done(full) }
        else if (full == "Discovery.MDNS.Enabled" && mdns != "") { line = setval(line, mdns); done(full) }
        else if (full == "Peering.Peers" && peers != "" && line !~ /[{[][ \t]*$/) { line = setval(line, peers); done(full) }
        else if (full == "Swarm.Transports.Security" && security != "" && line ~ /\{[ \t]*\},?[ \t]*$/) {
            line = setval(line, security); done(full)
        }
        else if (full == "Swarm.ConnMgr.LowWater" && connlow != "") { line = setval(line, connlow); done(full) }
        else if (full == "Swarm.ConnMgr.HighWater" && connhigh != "") { line = setval(line, connhigh); done(full) }
        else if (full == "Swarm.ResourceMgr" && rcmgr != "" && line ~ /\{[ \t]*\},?[ \t]*$/) {
            line = setval(line, rcmgr); done(full)
        }
        else if (full == "Experimental.FilestoreEnabled" && filestore != "") { line = setval(line, filestore); done(full) }
        if (line ~ /[{[][ \t]*$/) { depth++; path[depth] = full }
    } else if (bare == "}" || bare == "}," || bare == "]" || bare == "],") {
        depth--
    } else if (bare == "{" || bare == "[") {
        depth++; path[depth] = (depth > 1) ? path[depth - 1] "[]" : ""
    }
    print line
}
END {
    for (k in edited) print k > report
}
