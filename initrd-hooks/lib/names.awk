# names.awk -- normalise a Tiny Core list (onboot.lst) or .dep file into extension names.
#
# Like TC: '#' starts a comment (piCore also takes ';'), the first word of a line is the name,
# blank lines are skipped, ".tcz" is added when missing, "-KERNEL.tcz" becomes "-<uname -r>.tcz".
# Unlike TC we refuse anything that is not a plain file name, so no entry can reach outside
# optional/. Output, one per line:  "ok NAME"  or  "bad LINE REASON: 'TEXT'".  "toomany" stops.
# Variables: kernel (uname -r), max (most names accepted).
function bad(why, text) {
    if (length(text) > 60) text = substr(text, 1, 60) "..."
    gsub(/[^ -~]/, "?", text)
    print "bad " NR " " why ": '" text "'"
}
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
    if (name !~ /^[A-Za-z0-9][A-Za-z0-9._+-]*\.tcz$/) { bad("not a plain extension name", w[1] != "" ? w[1] : w[2]); next }
    if (index(name, "..")) { bad("'..' in name", name); next }
    if (name ~ /-KERNEL\.tcz$/) { bad("-KERNEL but the kernel release is unknown", name); next }
    if (seen[name]++) next
    if (++count > max) { print "toomany " max; exit }
    print "ok " name
}
