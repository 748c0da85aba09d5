# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# fetch.sh -- sources, the list, the .dep closure, md5-verified atomic placement into optional/.
#
# A source is a base URL of a flat TC repo (NAME.tcz, NAME.tcz.md5.txt, NAME.tcz.dep, <lst>):
#   P  the primary: kubo's local gateway http://127.0.0.1:<port>/ipfs/<CID>[/sub] (ipfs:, ipns:)
#      or the tce=http://... URL itself;
#   M  the mirror (ipfs.mirror=), asked when P fails.
# A source that fails other than with 404 (timeout, 5xx, refused) is not asked again: a CID no peer
# has must not cost the full timeout once per file. An md5 mismatch only moves that file to the next
# source. Each source has its own deadline (P_DEADLINE leaves a third of the time to the mirror).

MAX_EXT=1000
MAX_SHOWN=5 # problems shown one console line each; the rest are counted (all are in the log)
MAX_LIST_BYTES=1048576
MAX_DEP_BYTES=65536
MAX_MD5_BYTES=4096

P_URL=
P_UP=0
P_DESC=
P_DEADLINE=0
M_URL=
M_UP=0
M_DESC=
M_DEADLINE=0
P_BYTES=0
M_BYTES=0
P_USED=0
M_USED=0
FIRST_BYTE_CS=
LIST_CS=
FAILED=" "
FAIL_COUNT=0
FIRST_FAIL=
SHOWN=0
HIDDEN=0
LOOPS=0
GOT_OK=" "       # names fetched and placed (or ipfs.tcz, mounted from the initrd)
CLOSURE_STOP=    # why the closure walk stopped early, if it did
PLACED=
PLACED_COUNT=0
DOWNLOADED=" "
GOT_NEW=0
ORDER=
ROOTS=
PIN_NOTES=$WORK/pin-notes # "NAME REL" per file fetched through kubo (see from_kubo)

# from_kubo NAME REL: note that REL (a file of extension NAME) came through kubo's gateway, so its
# blocks are in kubo's repo: the seeding pin job (kubo.sh) pins it if NAME ends up placed.
from_kubo() {
    [ -n "$GATEWAY" ] && printf '%s %s\n' "$1" "$2" >>"$PIN_NOTES"
}

# src S: S_URL S_DEADLINE S_DESC S_UP = source S's settings (S is P or M).
src() {
    case $1 in
        P) S_URL=$P_URL S_DEADLINE=$P_DEADLINE S_DESC=$P_DESC S_UP=$P_UP ;;
        *) S_URL=$M_URL S_DEADLINE=$M_DEADLINE S_DESC=$M_DESC S_UP=$M_UP ;;
    esac
}

# src_down S / src_got S BYTES: mark source S as failed / count bytes it delivered.
src_down() {
    case $1 in
        P) P_UP=0 ;;
        *) M_UP=0 ;;
    esac
}

src_got() {
    case $1 in
        P) P_BYTES=$((P_BYTES + $2)) P_USED=1 ;;
        *) M_BYTES=$((M_BYTES + $2)) M_USED=1 ;;
    esac
}

# src_fetch S REL OUT [probe]: fetch REL from source S. 0 ok, 2 not found, 1 failed (then S is
# marked down). FETCH_ERR says why.
src_fetch() {
    src "$1"
    fetch_url "$S_URL/$2" "$3" "$S_DEADLINE" "${4:-}"
    _s_rc=$?
    if [ "$_s_rc" = 1 ]; then
        src_down "$1"
        if [ "$1" = P ] && [ "$M_UP" = 1 ]; then
            warn "$S_DESC: $2: $FETCH_ERR; using the mirror from now on"
        else
            dbg "$S_DESC: $2: $FETCH_ERR (not asking this source again)"
        fi
    fi
    return "$_s_rc"
}

# up_sources: SOURCES = the sources still worth asking, in order.
up_sources() {
    SOURCES=
    [ "$P_UP" = 1 ] && SOURCES=P
    [ "$M_UP" = 1 ] && SOURCES="$SOURCES M"
}

# problem TEXT: an error line on the console for the first MAX_SHOWN problems; after that only the
# log gets it and HIDDEN counts it (finish prints the count): a flood of bad input must not become
# minutes of serial console.
problem() {
    if [ "$SHOWN" -lt "$MAX_SHOWN" ]; then
        SHOWN=$((SHOWN + 1))
        err "$1"
    else
        HIDDEN=$((HIDDEN + 1))
        log "error: $1"
    fi
}

# fail_ext NAME REASON: record (once) that NAME will not be loaded (see problem).
fail_ext() {
    case $FAILED in *" $1 "*) return 0 ;; esac
    FAILED="$FAILED$1 "
    FAIL_COUNT=$((FAIL_COUNT + 1))
    [ -n "$FIRST_FAIL" ] || FIRST_FAIL="$1: $2"
    problem "$1: $2"
}

# fail_line TEXT: a failure that is not one extension's (a bad list line), see problem.
fail_line() {
    FAIL_COUNT=$((FAIL_COUNT + 1))
    [ -n "$FIRST_FAIL" ] || FIRST_FAIL=$1
    problem "$1"
}

is_failed() {
    case $FAILED in *" $1 "*) return 0 ;; esac
    return 1
}

# fetch_list: the list from the first source that has it -> $WORK/list. Status 1 with LIST_ERR.
fetch_list() {
    LIST_ERR=
    up_sources
    for _l_s in $SOURCES; do
        src_fetch "$_l_s" "$LST" "$WORK/list"
        _l_rc=$?
        src "$_l_s"
        _l_desc=$S_DESC
        if [ "$_l_rc" = 0 ]; then
            file_size "$WORK/list"
            if [ "$SIZE" -gt "$MAX_LIST_BYTES" ]; then
                LIST_ERR="$LST from $_l_desc is $SIZE bytes (at most $MAX_LIST_BYTES)"
                return 1
            fi
            if [ "$_l_s" = P ]; then
                tick
                LIST_CS=$NOW
            fi
            dbg "$LST: fetched from $_l_desc ($SIZE bytes)"
            return 0
        fi
        LIST_ERR="${LIST_ERR:+$LIST_ERR; }$LST from $_l_desc: $FETCH_ERR"
    done
    [ -n "$LIST_ERR" ] || LIST_ERR="$LST: no source left to ask"
    return 1
}

# read_names FILE WHAT [report]: run names.awk (NUL bytes made \001 first: busybox awk would end a
# line there, shifting every line number after it). NAMES = the good names, NAMES_BAD = the first
# problem. With "report", every bad line is a failure of its own (see problem; names.awk itself
# prints only the first few and counts the rest).
read_names() {
    NAMES=
    NAMES_BAD=
    tr '\000' '\001' <"$1" 2>/dev/null |
        awk -v kernel="$KREL" -v max="$MAX_EXT" -v maxbad="$MAX_SHOWN" -f "$HOOK_LIB/names.awk" \
            >"$WORK/names.out" 2>/dev/null
    while read -r _n_kind _n_a _n_rest; do
        case $_n_kind in
            ok) NAMES="$NAMES $_n_a"; continue ;;
            bad) _n_msg="line $_n_a: $_n_rest" ;;
            toomany) _n_msg="more than $_n_a entries; the rest is ignored" ;;
            morebad)
                if [ "${3:-}" = report ]; then
                    FAIL_COUNT=$((FAIL_COUNT + _n_a))
                    HIDDEN=$((HIDDEN + _n_a))
                    log "error: $2: $_n_a more bad lines"
                fi
                continue
                ;;
            *) continue ;;
        esac
        [ -n "$NAMES_BAD" ] || NAMES_BAD=$_n_msg
        [ "${3:-}" = report ] && fail_line "$2 $_n_msg"
    done <"$WORK/names.out"
}

# resolve_closure: ROOTS from the list; breadth-first, each name's .dep is read and the extension
# fetched (get_ext); ORDER = load order (deps first).
resolve_closure() {
    read_names "$WORK/list" "$LST" report
    ROOTS=${NAMES# }
    mkdir -p "$WORK/dep"
    printf '' >"$WORK/edges"
    [ "$KUBO_MOUNTED" = 1 ] && GOT_OK="${GOT_OK}ipfs.tcz "
    _c_queue=$ROOTS
    _c_seen=" "
    _c_n=0
    while [ -n "$_c_queue" ]; do
        # shellcheck disable=SC2086
        set -- $_c_queue
        _c_name=$1
        shift
        _c_queue=$*
        case $_c_seen in *" $_c_name "*) continue ;; esac
        _c_seen="$_c_seen$_c_name "
        _c_n=$((_c_n + 1))
        if [ "$_c_n" -gt "$MAX_EXT" ]; then
            CLOSURE_STOP="the closure has more than $MAX_EXT extensions"
            fail_line "$CLOSURE_STOP; stopped there"
            break
        fi
        # shellcheck disable=SC2153 # DEADLINE is set by main.sh
        secs_left "$DEADLINE"
        if [ "$LEFT" -le 0 ]; then
            CLOSURE_STOP="no time left"
            fail_line "no time left after $((_c_n - 1)) extensions of the closure; stopped there"
            break
        fi
        printf '' >"$WORK/dep/$_c_name"
        if [ "$_c_name" = ipfs.tcz ] && [ "$KUBO_MOUNTED" = 1 ]; then
            dbg "ipfs.tcz: using the one from the initrd (already mounted)"
            continue
        fi
        up_sources
        _c_got=
        for _c_s in $SOURCES; do
            src_fetch "$_c_s" "$_c_name.dep" "$WORK/dep/$_c_name.raw"
            case $? in
                0) _c_got=yes; [ "$_c_s" = P ] && from_kubo "$_c_name" "$_c_name.dep"; break ;;
                2) _c_got=none; break ;;
            esac
        done
        case $_c_got in
            none) ;;
            yes)
                file_size "$WORK/dep/$_c_name.raw"
                if [ "$SIZE" -gt "$MAX_DEP_BYTES" ]; then
                    fail_ext "$_c_name" "$_c_name.dep is $SIZE bytes (at most $MAX_DEP_BYTES)"
                    continue
                fi
                read_names "$WORK/dep/$_c_name.raw" "$_c_name.dep"
                if [ -n "$NAMES_BAD" ]; then
                    fail_ext "$_c_name" "bad $_c_name.dep: $NAMES_BAD"
                    continue
                fi
                for _c_d in $NAMES; do
                    printf '%s %s\n' "$_c_name" "$_c_d" >>"$WORK/edges"
                    printf '%s\n' "$_c_d" >>"$WORK/dep/$_c_name"
                    _c_queue="$_c_queue $_c_d"
                done
                ;;
            *)
                fail_ext "$_c_name" "cannot fetch $_c_name.dep: ${FETCH_ERR:-no source left}"
                continue
                ;;
        esac
        # Fetch it now, not after the whole closure is known: the first .tcz bytes flow early.
        if get_ext "$_c_name"; then
            GOT_OK="$GOT_OK$_c_name "
            [ "$GOT_NEW" = 1 ] && DOWNLOADED="$DOWNLOADED$_c_name "
        else
            fail_ext "$_c_name" "$EXT_ERR"
        fi
    done
    ORDER=
    awk -v roots="$ROOTS" -f "$HOOK_LIB/closure.awk" "$WORK/edges" >"$WORK/order.out" 2>/dev/null
    while read -r _c_kind _c_name; do
        case $_c_kind in
            ok) ORDER="$ORDER $_c_name" ;;
            cycle)
                LOOPS=$((LOOPS + 1))
                if [ "$LOOPS" -le 3 ]; then
                    warn "dependency loop through $_c_name: loading it once"
                else
                    log "dependency loop through $_c_name: loading it once"
                fi
                ;;
        esac
    done <"$WORK/order.out"
    ORDER=${ORDER# }
    [ "$LOOPS" -le 3 ] || warn "$((LOOPS - 3)) more dependency loops (see the log)"
    dbg "closure: $ORDER"
}

# md5_expected FILE NAME: MD5_WANT = the digest in a .md5.txt ("<32 hex>  NAME"); status 1 if malformed.
md5_expected() {
    MD5_WANT=
    file_size "$1"
    [ "$SIZE" -le "$MAX_MD5_BYTES" ] || return 1
    read -r MD5_WANT _m_name <"$1" || [ -n "$MD5_WANT" ] || return 1
    case $MD5_WANT in
        *[!0-9a-fA-F]*) return 1 ;;
    esac
    [ "${#MD5_WANT}" -eq 32 ] || return 1
    MD5_WANT=$(printf '%s' "$MD5_WANT" | tr 'A-F' 'a-f')
    return 0
}

# get_ext NAME: fetch NAME.tcz.md5.txt and NAME.tcz from the first source that delivers a file with
# the right md5; place it atomically. Status 1 with EXT_ERR.
get_ext() {
    EXT_ERR=
    GOT_NEW=0
    up_sources
    mkdir -p "$WORK/get"
    for _g_s in $SOURCES; do
        src "$_g_s"
        _g_desc=$S_DESC
        [ "$S_UP" = 1 ] || continue # marked down during this loop
        src_fetch "$_g_s" "$1.md5.txt" "$WORK/get/$1.md5.txt"
        case $? in
            0) ;;
            2) EXT_ERR="${EXT_ERR:+$EXT_ERR; }no $1.md5.txt at $_g_desc"; continue ;;
            *) EXT_ERR="${EXT_ERR:+$EXT_ERR; }$1.md5.txt from $_g_desc: $FETCH_ERR"; continue ;;
        esac
        if ! md5_expected "$WORK/get/$1.md5.txt"; then
            EXT_ERR="${EXT_ERR:+$EXT_ERR; }malformed $1.md5.txt at $_g_desc"
            continue
        fi
        [ "$_g_s" = P ] && from_kubo "$1" "$1.md5.txt"
        if [ -f "$OPT/$1" ]; then
            md5_of "$OPT/$1"
            if [ "$MD5" = "$MD5_WANT" ]; then
                dbg "$1: already in optional/ with the right md5"
                place_sidecars "$1"
                return 0
            fi
        fi
        _g_probe=
        [ "$_g_s" = P ] && [ -z "$FIRST_BYTE_CS" ] && _g_probe=probe
        src_fetch "$_g_s" "$1" "$OPT/$1.part" "$_g_probe"
        case $? in
            0) ;;
            2) EXT_ERR="${EXT_ERR:+$EXT_ERR; }$1 not found at $_g_desc"; continue ;;
            *) EXT_ERR="${EXT_ERR:+$EXT_ERR; }$1 from $_g_desc: $FETCH_ERR"; continue ;;
        esac
        md5_of "$OPT/$1.part"
        if [ "$MD5" != "$MD5_WANT" ]; then
            rm -f "$OPT/$1.part"
            EXT_ERR="${EXT_ERR:+$EXT_ERR; }md5 mismatch from $_g_desc (expected $MD5_WANT, got $MD5)"
            continue
        fi
        file_size "$OPT/$1.part"
        src_got "$_g_s" "$SIZE"
        [ "$_g_s" = P ] && from_kubo "$1" "$1"
        place_sidecars "$1"
        mv -f "$OPT/$1.part" "$OPT/$1" || { EXT_ERR="cannot move $1 into optional/"; return 1; }
        GOT_NEW=1
        dbg "$1: $SIZE bytes from $_g_desc, md5 ok"
        return 0
    done
    [ -n "$EXT_ERR" ] || EXT_ERR="no source left to ask"
    return 1
}

# place_sidecars NAME: canonical NAME.md5.txt and the normalised NAME.dep next to NAME in optional/
# (tce-load reads the .dep at boot: it must hold plain names only, which ours does).
place_sidecars() {
    printf '%s  %s\n' "$MD5_WANT" "$1" | write_atomic "$OPT/$1.md5.txt"
    if [ "$LOADER" = tce-bootload ] && [ "$KUBO_MOUNTED" = 1 ]; then
        # tce-bootload adds what a .dep names to its list: ipfs.tcz (loaded by us, see loader.sh)
        # would be mounted and set up a second time.
        grep -vxF ipfs.tcz "$WORK/dep/$1" 2>/dev/null | write_atomic "$OPT/$1.dep"
    else
        write_atomic "$OPT/$1.dep" <"$WORK/dep/$1"
    fi
    [ -s "$OPT/$1.dep" ] || rm -f "$OPT/$1.dep"
}

# settle: walk ORDER (deps first): a name that was never fetched (the walk stopped early) is not
# listed, and an extension whose dependency failed fails too (a file we just downloaded for it is
# removed again); the rest is PLACED, in load order. No waiting here: at most MAX_EXT + a few names.
settle() {
    for _a_name in $ORDER; do
        is_failed "$_a_name" && continue
        [ "$_a_name" = ipfs.tcz ] && [ "$KUBO_MOUNTED" = 1 ] && continue
        case $GOT_OK in
            *" $_a_name "*) ;;
            *)
                fail_ext "$_a_name" "not fetched: ${CLOSURE_STOP:-the closure walk stopped}"
                continue
                ;;
        esac
        _a_missing=
        while read -r _a_d; do
            if is_failed "$_a_d"; then
                _a_missing=$_a_d
                break
            fi
        done <"$WORK/dep/$_a_name"
        if [ -n "$_a_missing" ]; then
            fail_ext "$_a_name" "not loaded: its dependency $_a_missing failed"
            case $DOWNLOADED in
                *" $_a_name "*) rm -f "$OPT/$_a_name" "$OPT/$_a_name.md5.txt" "$OPT/$_a_name.dep" ;;
            esac
            continue
        fi
        PLACED="$PLACED $_a_name"
        PLACED_COUNT=$((PLACED_COUNT + 1))
    done
    PLACED=${PLACED# }
}

# write_list: append ipfs.tcz (when we mounted it and tce-load will link it) and the placed names to $BUILTIN/<lst>,
# keeping what is already there and never listing a name twice.
write_list() {
    _w_list=$BUILTIN/$LST
    _w_names=$PLACED
    loader_lists_kubo && _w_names="ipfs.tcz $_w_names"
    [ -n "${_w_names# }" ] || return 0
    mkdir -p "$BUILTIN"
    {
        [ -f "$_w_list" ] && cat "$_w_list"
        for _w_n in $_w_names; do
            [ -f "$_w_list" ] && grep -qxF "$_w_n" "$_w_list" && continue
            printf '%s\n' "$_w_n"
        done
    } | write_atomic "$_w_list"
}
