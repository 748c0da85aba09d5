# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# onecopy.sh -- every fetched byte held once in RAM: kubo serves a placed extension from its file in
# optional/ instead of from a second copy in its repo.
#
# A .tcz fetched through kubo exists twice in RAM: as the file in optional/ (which tce-load mounts,
# so it must stay exactly as it is) and as blocks in kubo's RAM repo (which it serves to peers). For a
# file of several blocks (CIDv1, raw leaves) we switch kubo to the file, with kubo's filestore
# (Experimental.FilestoreEnabled; `ipfs add --nocopy` records "CID = these bytes of that file"):
#   1. plan: the CID others ask for (`resolve` of /ipfs/<root>[/sub]/NAME), its first level (`ls`:
#      every chunk kubo's default 256 KiB, or full 174-link nodes of them) and all its blocks (`refs`:
#      raw leaves, dag-pb nodes above them). Anything else -- CIDv0, other chunk sizes, no raw
#      leaves -- was published with other parameters: the blocks stay, nothing changes;
#   2. `block rm` the raw leaves (the dag-pb nodes above them stay: a few hundred bytes per 44 MiB);
#   3. `add --nocopy --cid-version=1 --raw-leaves --chunker=size-262144` of the placed file: the
#      leaves come back as references into the file. The CID it gives must be the one of step 1;
#      if not (another kubo layout after all), the switch is off for the rest of this boot and the
#      leaves are fetched again from the peers (`refs`), so the CID keeps resolving either way.
#      The add is a raw HTTP request to the daemon's RPC API sent with busybox nc (oc_add_http): the
#      kubo CLI would be a second Go process next to the daemon (tens of MiB), which a 256 MiB
#      machine holding a 96 MiB onboot set does not have. Without nc, the CLI (oc_add_cli).
# kubo's filestore only takes files under the directory that holds its repo, so kubo runs with
# IPFS_PATH=/tmp/.tce-ipfs-repo, a symlink to /tmp/tce-ipfs/repo (see kubo_prepare).
#
# When: step 3 runs in the seeding job once tce-setup is done, one file after the other, off the
# boot's path. Steps 1 and 2 run there too, unless RAM is tight (MemTotal below 512 MiB, or
# MemAvailable below half of it): then they run in the data job right after the file is placed, so
# the second copy never piles up and a 256 MiB machine can load an onboot set of 96 MiB; the blocks
# of those files are then missing until step 3 (a peer that asks meanwhile is served by another
# peer, or by us a minute later). If RAM is short even for step 3 (MemAvailable below
# ONECOPY_MIN_AVAIL), the files left are not seeded by this machine and a console line says which
# (the boot is done by then: they are loaded either way). With ipfs.seed=0 steps 1 and 2 alone run
# inline when RAM is tight (kubo and its repo go away after the boot anyway).
# With ipfs.onecopy=0 nothing here runs (the old two-copy behaviour).

ONECOPY_CHUNK=262144  # kubo's default chunker (`tce-ipfs publish` uses it)
ONECOPY_NODE=45613056 # 174 chunks: a full dag-pb node one level up (kubo's default max links)
ONECOPY_BATCH=40      # CIDs per block/rm call
ONECOPY_MAX=600       # seconds for one file's `add --nocopy` (kubo hashes the file once)
ONECOPY_ON=0          # 1: kubo runs with the filestore (kubo_prepare)
ONECOPY_WHY=
ONECOPY_LOCK_WAIT=600 # tenths of a second a job waits for another's kubo CLI run

# oc_post DEADLINE_CS MAXSECS OUT CALL: POST /api/v0/CALL to the local kubo; OUT = its answer.
oc_post() {
    bounded "$1" "$2" "$WGET" -q -O "$3" --post-data= "$API_URL/api/v0/$4" 2>/dev/null
}

# mem_tight: status 0 when RAM is tight: MemTotal below 512 MiB, or MemAvailable below half of it
# (or /proc/meminfo cannot be read: be careful).
mem_tight() {
    awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 }
        END { exit !(t == "" || a == "" || t < 524288 || a * 2 < t) }' "$ROOT/proc/meminfo" 2>/dev/null
}

# fs_kib PATH: FS_USED FS_FREE = KiB used in, and free for use in, the file system holding PATH (TC:
# the RAM root), from statfs (`stat -f`: df leaves out the rootfs entry); empty if unknown.
fs_kib() {
    FS_USED=
    FS_FREE=
    # shellcheck disable=SC2046 # two numbers
    set -- $(stat -f -c '%b %f %a %S' "$1" 2>/dev/null |
        awk 'NF == 4 && $4 > 0 { printf "%.0f %.0f\n", ($1 - $2) * $4 / 1024, $3 * $4 / 1024 }')
    [ "$#" -eq 2 ] || return 0
    FS_USED=$1
    FS_FREE=$2
}

# ram_used_kib: RAM_USED = KiB used in the file system holding /tmp, or empty.
ram_used_kib() {
    fs_kib "$ROOT/tmp"
    RAM_USED=$FS_USED
}

# onecopy_plan DEADLINE_CS NAME: step 1 for NAME (placed, fetched through kubo). Status 0: it can
# switch; $WORK/oc/NAME.cid holds the CID, NAME.leaves its raw leaves. Status 1: keep the blocks,
# ONECOPY_WHY says why (empty: nothing to gain, a one-block file).
onecopy_plan() {
    ONECOPY_WHY=
    _op_dir=$WORK/oc
    mkdir -p "$_op_dir"
    _op_path=/ipfs/$CID${SUBPATH:+/$SUBPATH}/$2
    case $_op_path in
        *+*) _op_path=$(printf '%s' "$_op_path" | sed 's/+/%2B/g') ;; # "+" in a query means a space
    esac
    if ! oc_post "$1" 30 "$_op_dir/$2.res" "resolve?arg=$_op_path"; then
        ONECOPY_WHY="cannot resolve its CID"
        return 1
    fi
    _op_cid=$(sed -n 's/.*"Path":"\/ipfs\/\([A-Za-z0-9]*\)".*/\1/p' "$_op_dir/$2.res")
    case $_op_cid in
        bafy*) ;;
        bafk*) return 1 ;; # one raw block: nothing worth a kubo CLI start
        *)
            ONECOPY_WHY="CID ${_op_cid:-?} is not CIDv1 with raw leaves"
            return 1
            ;;
    esac
    if ! oc_post "$1" 30 "$_op_dir/$2.ls" "ls?arg=$_op_cid&resolve-type=false"; then
        ONECOPY_WHY="cannot list its blocks"
        return 1
    fi
    # every first-level link but the last: a full chunk, or a full node of them
    if ! tr ',' '\n' <"$_op_dir/$2.ls" | sed -n 's/.*"Size":\([0-9]*\).*/\1/p' |
        awk -v c="$ONECOPY_CHUNK" -v n="$ONECOPY_NODE" '{ s[NR] = $1 }
            END { if (NR < 2) exit 1
                  for (i = 1; i < NR; i++) if (s[i] != c && s[i] != n) exit 1
                  exit !(s[NR] <= n) }'; then
        ONECOPY_WHY="not in ${ONECOPY_CHUNK}-byte chunks"
        return 1
    fi
    if ! oc_post "$1" 60 "$_op_dir/$2.refs" "refs?arg=$_op_cid&recursive=true&unique=true"; then
        ONECOPY_WHY="cannot list its blocks"
        return 1
    fi
    sed -n 's/.*"Ref":"\([A-Za-z0-9]*\)".*/\1/p' "$_op_dir/$2.refs" >"$_op_dir/$2.all"
    grep '^bafk' "$_op_dir/$2.all" >"$_op_dir/$2.leaves"
    if grep -qv '^baf[ky]' "$_op_dir/$2.all" || [ ! -s "$_op_dir/$2.leaves" ]; then
        ONECOPY_WHY="blocks other than raw leaves under dag-pb nodes"
        return 1
    fi
    printf '%s\n' "$_op_cid" >"$_op_dir/$2.cid"
    rm -f "$_op_dir/$2.res" "$_op_dir/$2.ls" "$_op_dir/$2.refs" "$_op_dir/$2.all"
    return 0
}

# onecopy_drop DEADLINE_CS NAME: step 2, `block rm` of NAME's raw leaves (ONECOPY_BATCH a call).
onecopy_drop() {
    in_batches "$ONECOPY_BATCH" "$WORK/oc/$2.leaves" oc_block_rm "$1"
}

# oc_block_rm DEADLINE_CS CID...: one `block rm` call for the CIDs.
oc_block_rm() {
    _ob_dl=$1
    shift
    _ob_q=
    for _ob_c in "$@"; do
        _ob_q="$_ob_q&arg=$_ob_c"
    done
    oc_post "$_ob_dl" 60 /dev/null "block/rm?${_ob_q#&}&quiet=true"
}

# oc_lock / oc_unlock: one kubo CLI run at a time (each is a Go process of its own: tens of MiB).
oc_lock() {
    _ol_i=0
    while ! mkdir "$WORK/oc.lock" 2>/dev/null; do
        _ol_i=$((_ol_i + 1))
        [ "$_ol_i" -lt "$ONECOPY_LOCK_WAIT" ] || return 1
        nap 0.1
    done
}
oc_unlock() {
    rmdir "$WORK/oc.lock" 2>/dev/null
}

# oc_add_http DEADLINE_CS NAME: step 3 for one file as a raw HTTP request to the daemon's RPC API
# (busybox nc), so no second Go process runs next to the daemon: `ipfs add --nocopy` itself only
# sends the file's bytes in a multipart body with an Abspath header, and the daemon hashes them and
# records "these bytes of that file". On a 256 MiB machine holding a 96 MiB onboot set the kubo CLI
# (tens of MiB) did not fit next to the daemon: the machine thrashed. The body is streamed from the
# file through a fifo (nothing is copied in RAM); nc's input stays open until the daemon has
# answered and closed the connection (a half-closed request would look like a client that left).
# Output in $WORK/oc/add.out (the HTTP answer), add.err.
oc_add_http() {
    _oh_dir=$WORK/oc
    _oh_hp=${API_URL#http://}
    file_size "$OPT/$2"
    _oh_b=tce-ipfs-onecopy-$$-5f0c6b2a9e
    printf -- '--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\nContent-Type: application/octet-stream\r\nAbspath: %s\r\n\r\n' \
        "$_oh_b" "$2" "$OPT/$2" >"$_oh_dir/add.head"
    printf '\r\n--%s--\r\n' "$_oh_b" >"$_oh_dir/add.tail"
    _oh_len=$SIZE
    file_size "$_oh_dir/add.head"
    _oh_len=$((_oh_len + SIZE))
    file_size "$_oh_dir/add.tail"
    _oh_len=$((_oh_len + SIZE))
    rm -f "$_oh_dir/add.fifo"
    mkfifo "$_oh_dir/add.fifo" || return 1
    bounded "$1" "$ONECOPY_MAX" "$NC" "${_oh_hp%:*}" "${_oh_hp##*:}" <"$_oh_dir/add.fifo" \
        >"$_oh_dir/add.out" 2>"$_oh_dir/add.err" &
    _oh_pid=$!
    # a subshell: if nc is gone early, a write to the fifo ends it (SIGPIPE), not the job
    (
        printf 'POST /api/v0/add?nocopy=true&cid-version=1&raw-leaves=true&chunker=size-%s&pin=false&progress=false HTTP/1.1\r\nHost: %s\r\nContent-Type: multipart/form-data; boundary=%s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
            "$ONECOPY_CHUNK" "$_oh_hp" "$_oh_b" "$_oh_len"
        cat "$_oh_dir/add.head" "$OPT/$2" "$_oh_dir/add.tail"
        while kill -0 "$_oh_pid" 2>/dev/null; do
            nap 0.2
        done
    ) >"$_oh_dir/add.fifo" 2>/dev/null
    wait "$_oh_pid"
    _oh_rc=$?
    rm -f "$_oh_dir/add.fifo" "$_oh_dir/add.head" "$_oh_dir/add.tail"
    return "$_oh_rc"
}

# oc_add_cli DEADLINE_CS NAME: step 3 for one file with the kubo CLI (no nc on this machine).
oc_add_cli() {
    oc_lock || { echo "another kubo CLI run did not end" >"$WORK/oc/add.err"; return 1; }
    # The CLI is a Go process of its own, next to the daemon: a small heap (it only streams the file
    # to the daemon), not the daemon's GOGC=off one.
    GOGC=50 GOMEMLIMIT=16MiB bounded "$1" "$ONECOPY_MAX" "$KUBO_BIN" add --nocopy --cid-version=1 \
        --raw-leaves --chunker=size-$ONECOPY_CHUNK --pin=false "$OPT/$2" >"$WORK/oc/add.out" 2>"$WORK/oc/add.err"
    _oc_rc=$?
    oc_unlock
    return "$_oc_rc"
}

# oc_add DEADLINE_CS NAME: step 3 for NAME; OC_GOT = the CID kubo gave the placed file (or empty),
# OC_HOW = which way it went.
OC_HOW=
oc_add() {
    OC_GOT=
    OC_HOW="kubo CLI"
    if [ -n "$NC" ] && command -v "$NC" >/dev/null 2>&1; then
        OC_HOW="RPC API"
        oc_add_http "$1" "$2"
        _oa_rc=$?
        OC_GOT=$(sed -n 's/.*"Hash":"\([A-Za-z0-9]*\)".*/\1/p' "$WORK/oc/add.out" | tail -n 1)
        # an error answer: kubo's JSON message (or the status line) is the reason
        [ -n "$OC_GOT" ] || sed -n 's/.*"Message":"\([^"]*\)".*/\1/p; 1s/^HTTP[^ ]* //p' "$WORK/oc/add.out" |
            tr -d '\r' | grep -v '^200 ' >>"$WORK/oc/add.err"
    else
        oc_add_cli "$1" "$2"
        _oa_rc=$?
        OC_GOT=$(awk '$1 == "added" { c = $2 } END { print c }' "$WORK/oc/add.out")
    fi
    return "$_oa_rc"
}

# onecopy_switch DEADLINE_CS NAME...: steps 2 and 3 for NAMEs planned by onecopy_plan, one file at a
# time (the daemon hashes one file, then the next: its heap holds one file's work). Each NAME served
# from its file is noted in $WORK/onecopy.done ("NAME BYTES"); a CID that differs turns the switch
# off ($WORK/onecopy.off) and fetches the blocks of that file (and of the rest, if dropped) again.
# When MemAvailable is below ONECOPY_MIN_AVAIL KiB before a file, that file and the rest stay as they
# are (leaves dropped while RAM was tight are then not served by this machine: peers get them
# elsewhere; fetching them again would take the RAM that is missing), one console line says which,
# and ONECOPY_SKIPPED names them (kubo_pin leaves them out: a pin would fetch them again).
ONECOPY_MIN_AVAIL=8192
ONECOPY_SKIPPED=
onecopy_switch() {
    _os_dl=$1
    shift
    _os_skip=
    _os_skip_n=0
    _os_skip_bytes=0
    _os_avail=
    for _os_n in "$@"; do
        read -r _os_want <"$WORK/oc/$_os_n.cid"
        if [ -d "$WORK/onecopy.off" ]; then
            # switched off by an earlier file: this one keeps (or gets back) kubo's copy
            [ -e "$WORK/oc/$_os_n.dropped" ] && { oc_post "$_os_dl" 0 /dev/null "refs?arg=$_os_want&recursive=true" ||
                log "onecopy: $_os_n: could not fetch its blocks again"; }
        else
            mem_avail_kib
            if [ -z "$_os_skip" ] && [ -n "$MEM_AVAIL" ] && [ "$MEM_AVAIL" -lt "$ONECOPY_MIN_AVAIL" ]; then
                _os_avail=$MEM_AVAIL
                _os_skip=1
            fi
        fi
        if [ -n "$_os_skip" ]; then
            ONECOPY_SKIPPED="$ONECOPY_SKIPPED $_os_n"
            _os_skip_n=$((_os_skip_n + 1))
            file_size "$OPT/$_os_n"
            _os_skip_bytes=$((_os_skip_bytes + SIZE))
        elif [ ! -d "$WORK/onecopy.off" ]; then
            [ -e "$WORK/oc/$_os_n.dropped" ] || onecopy_drop "$_os_dl" "$_os_n"
            oc_add "$_os_dl" "$_os_n"
            _os_rc=$?
            if [ -n "$OC_GOT" ] && [ "$OC_GOT" = "$_os_want" ]; then
                file_size "$OPT/$_os_n"
                printf '%s %s\n' "$_os_n" "$SIZE" >>"$WORK/onecopy.done"
                mem_avail_kib
                log "onecopy: $_os_n served from optional/ ($_os_want; added over the $OC_HOW; MemAvailable ${MEM_AVAIL:-?} KiB)"
            else
                mkdir "$WORK/onecopy.off" 2>/dev/null
                last_line "$WORK/oc/add.err"
                log "onecopy: $_os_n: the file gives ${OC_GOT:-no CID} (add exit $_os_rc${LAST:+: $LAST}), not $_os_want; keeping kubo's copy (switch off for this boot)"
                # the leaves were dropped: fetch them again so the CID keeps resolving
                oc_post "$_os_dl" 0 /dev/null "refs?arg=$_os_want&recursive=true" ||
                    log "onecopy: $_os_n: could not fetch its blocks again"
            fi
        fi
        rm -f "$WORK/oc/$_os_n.cid" "$WORK/oc/$_os_n.leaves" "$WORK/oc/$_os_n.dropped" "$WORK/oc/add.out" "$WORK/oc/add.err"
    done
    ONECOPY_SKIPPED=${ONECOPY_SKIPPED# }
    [ "$_os_skip_n" -eq 0 ] ||
        warn "onecopy: not enough RAM to seed $_os_skip_n extension(s) ($((_os_skip_bytes / 1048576)) MiB: $ONECOPY_SKIPPED): $_os_avail KiB available, $ONECOPY_MIN_AVAIL needed; they are loaded, peers fetch them elsewhere"
}

# onecopy_placed NAME: (data job) NAME was just placed from kubo. When RAM is tight, steps 1 and 2 now
# (kubo's copy goes); step 3, and all of it otherwise, in the seeding job (onecopy_deferred).
onecopy_placed() {
    # shellcheck disable=SC2153 # ONECOPY is set by parse.sh
    [ "$ONECOPY" = 1 ] && [ -n "$API_URL" ] && [ ! -d "$WORK/onecopy.off" ] || return 0
    if [ "$SEED" = 0 ]; then
        mem_tight || return 0
        onecopy_plan "$P_DEADLINE" "$1" && onecopy_drop "$P_DEADLINE" "$1"
        return 0
    fi
    [ "$ONECOPY_ON" = 1 ] || return 0
    if mem_tight; then
        if ! onecopy_plan "$P_DEADLINE" "$1"; then
            [ -z "$ONECOPY_WHY" ] || log "onecopy: $1: $ONECOPY_WHY; kubo keeps its copy"
            return 0
        fi
        onecopy_drop "$P_DEADLINE" "$1"
        : >"$WORK/oc/$1.dropped"
    fi
    printf '%s\n' "$1" >>"$WORK/onecopy.todo"
}

# onecopy_deferred DEADLINE_CS: (seeding job) switch every queued name that was placed.
onecopy_deferred() {
    [ -s "$WORK/onecopy.todo" ] && [ "$ONECOPY_ON" = 1 ] || return 0
    _od_ok=
    while read -r _od_n; do
        case " $PLACED " in *" $_od_n "*) ;; *) continue ;; esac
        [ -d "$WORK/onecopy.off" ] && break
        if [ -e "$WORK/oc/$_od_n.dropped" ] || onecopy_plan "$1" "$_od_n"; then
            _od_ok="$_od_ok $_od_n"
        elif [ -n "$ONECOPY_WHY" ]; then
            log "onecopy: $_od_n: $ONECOPY_WHY; kubo keeps its copy"
        fi
    done <"$WORK/onecopy.todo"
    rm -f "$WORK/onecopy.todo"
    # shellcheck disable=SC2086 # checked names, globbing is off
    [ -z "$_od_ok" ] || onecopy_switch "$1" $_od_ok
}

# onecopy_count: ONECOPY_N ONECOPY_BYTES = extensions served from their file, and their bytes.
onecopy_count() {
    ONECOPY_N=0
    ONECOPY_BYTES=0
    [ -s "$WORK/onecopy.done" ] || return 0
    # shellcheck disable=SC2046 # two numbers
    set -- $(awk '{ n++; b += $2 } END { printf "%d %.0f\n", n, b }' "$WORK/onecopy.done")
    ONECOPY_N=${1:-0}
    ONECOPY_BYTES=${2:-0}
}
