# order.awk -- this machine's order of a list: the input lines, shuffled by a key (the peer ID).
#
# Machines that boot at the same moment fetch the same files; if each asks for them (and for the
# blocks inside them) in its own order, they hold different parts early and can trade them instead
# of all asking the origin for the same block at once. Deterministic: the same key and the same
# lines give the same order (a Fisher-Yates shuffle driven by a small LCG seeded from the key; the
# arithmetic stays below 2^53 so every awk computes it exactly).
# Variable key: any string (characters outside [0-9A-Za-z] count as 0).
BEGIN {
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    s = 7
    for (i = 1; i <= length(key); i++)
        s = (s * 131 + index(alphabet, substr(key, i, 1)) + 1) % 4294967296
}
NF { line[++n] = $0 }
END {
    for (i = n; i > 1; i--) {
        s = (s * 69069 + 1) % 4294967296
        j = int(s / 4294967296 * i) + 1
        t = line[i]; line[i] = line[j]; line[j] = t
    }
    for (i = 1; i <= n; i++) print line[i]
}
