# blocks.awk -- the block lists of files, from kubo's `ls` answer for them (its JSON, as one line or
# many): {"Objects":[{"Hash":"/ipfs/<cid>/<path>/NAME","Links":[{"Name":"","Hash":"<cid>",...},...]},...]}
#
# Every "Hash" value that is a path starts an object (the file NAME, its last component); the CIDs
# that follow it are its blocks. For each file of two blocks or more, the file `dir "/" NAME` gets
# one CID a line. Names and CIDs are checked (plain names; CIDs of [A-Za-z0-9] only), so nothing
# kubo says can make us write elsewhere. Variable dir: where the lists go.
{
    rest = $0
    while (match(rest, /"Hash":"[^"]*"/)) {
        v = substr(rest, RSTART + 8, RLENGTH - 9)
        rest = substr(rest, RSTART + RLENGTH)
        if (substr(v, 1, 1) == "/") {
            name = v
            sub(/.*\//, "", name)
            if (name !~ /^[A-Za-z0-9][A-Za-z0-9._+-]*$/ || name ~ /\.\./) name = ""
            if (name != "") { files[++nf] = name; n[name] = 0 }
        } else if (name != "" && v ~ /^[A-Za-z0-9]+$/ && length(v) <= 128) {
            block[name, ++n[name]] = v
        }
    }
}
END {
    for (f = 1; f <= nf; f++) {
        name = files[f]
        if (n[name] < 2) continue
        out = dir "/" name
        for (i = 1; i <= n[name]; i++) print block[name, i] > out
        close(out)
    }
}
