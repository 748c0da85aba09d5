# closure.awk -- order a dependency closure: dependencies first, each name once, cycles broken.
#
# Input lines: "PARENT DEP" edges (in .dep order). Variable roots: the list's names, space-separated,
# in list order. Output: "ok NAME" in load order, "cycle NAME" where a loop was cut (like tce-load,
# we warn and carry on: the name already on the path is loaded once).
{ n = ++ndeps[$1]; dep[$1, n] = $2 }
function visit(name,    i) {
    if (state[name] == 2) return
    if (state[name] == 1) { print "cycle " name; return }
    state[name] = 1
    for (i = 1; i <= ndeps[name]; i++) visit(dep[name, i])
    state[name] = 2
    print "ok " name
}
END {
    nroots = split(roots, r, " ")
    for (i = 1; i <= nroots; i++) visit(r[i])
}
