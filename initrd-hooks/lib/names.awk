# names.awk -- normalise a Tiny Core list (onboot.lst) or .dep file into extension names.
#
# Like TC: '#' starts a comment (piCore also takes ';'), the first word of a line is the name,
# blank lines are skipped, ".tcz" is added when missing, "-KERNEL.tcz" becomes "-<uname -r>.tcz".
# Unlike TC we refuse anything that is not a plain file name, so no entry can reach outside
# optional/. Output, one per line:  "ok NAME"  or  "bad LINE REASON: 'TEXT'".  "toomany" stops.
# Only the first maxbad bad lines are printed; "morebad N" at the end counts the rest (a list of
# 200,000 bad lines must not become 200,000 lines for the shell to read). A name longer than 128
# characters -- also after "-KERNEL" is replaced -- is refused before it reaches the file system.
# The caller turns NUL bytes into \001 first (busybox awk would end a record at a NUL).
# Variables: kernel (uname -r), max (most names accepted), maxbad (most bad lines printed).
BEGIN { if (maxbad == "") maxbad = 2147483647 }
function bad(why, text) {
    if (++nbad > maxbad) return
    if (length(text) > 60) text = substr(text, 1, 60) "..."
    gsub(/[^ -~]/, "?", text)
    print "bad " NR " " why ": '" text "'"
}
END { if (nbad > maxbad) print "morebad " (nbad - maxbad) }
{
    line = $0
    sub(/\r$/, "", line)
    if (length(line) > 1024) { bad("line too long (" length(line) " characters)", line); next }
    sub(/[#;].*/, "", line)
    if (split(line, w, /[ \t]+/) == 0) next
    name = (w[1] != "") ? w[1] : w[2]
    if (name == "") next
    if (length(name) > 128) { bad("name too long", name); next }
    if (name !~ /\.tcz$/) name = name ".tcz"
    if (kernel != "") gsub(/-KERNEL\.tcz$/, "-" kernel ".tcz", name)
    if (length(name) > 128) { bad("name too long", name); next }
    if (name !~ /^[A-Za-z0-9][A-Za-z0-9._+-]*\.tcz$/) { bad("not a plain extension name", w[1] != "" ? w[1] : w[2]); next }
    if (index(name, "..")) { bad("'..' in name", name); next }
    if (name ~ /-KERNEL\.tcz$/) { bad("-KERNEL but the kernel release is unknown", name); next }
    if (seen[name]++) next
    if (++count > max) { print "toomany " max; exit }
    print "ok " name
}
