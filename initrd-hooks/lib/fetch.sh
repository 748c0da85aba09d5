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
#
# Parallel, bounded. The closure is walked breadth-first, a level at a time: the level's .dep files
# are fetched at once (FETCH_META_JOBS at a time); every name whose .dep was read joins the data
# queue, from which FETCH_JOBS background jobs fetch NAME.tcz.md5.txt and NAME.tcz, check the md5 and
# place the file -- while the next level's .dep files are read. Jobs are subshells: they share the
# sources' state through the file system ($WORK/down.S, made by the first process that finds S
# failing and checked before every request) and report the rest in $WORK/job/NAME (bytes, source,
# error, time spent on md5 and placing), which only the main shell turns into counters and lines.
#
# Each machine has its own order (machines booting together then hold different parts early and
# trade them over bitswap instead of all asking the origin for the same block at once): a level's
# names are queued shuffled by this machine's key (kubo's peer ID; lib/order.awk). And when there can
# be someone to trade with -- LAN discovery is on, or ipfs.peers names more than one peer -- a file
# of several blocks is first fetched block by block in a shuffled order (its block list from one
# `ls` call per level, FETCH_BLOCK_JOBS `refs` requests at a time) and only then read, from kubo's
# own store by then, into optional/. With only the seed to ask this would cost requests and win
# nothing, so then files are read in order. kubo checks every block against its CID either way; the
# md5 check after it is unchanged.

MAX_EXT=1000
MAX_SHOWN=5 # problems shown one console line each; the rest are counted (all are in the log)
MAX_LIST_BYTES=1048576
MAX_DEP_BYTES=65536
MAX_MD5_BYTES=4096
FETCH_JOBS=3       # .tcz fetches at once
FETCH_META_JOBS=4  # .dep fetches at once
FETCH_BLOCK_JOBS=4 # block requests at once for one file (kubo); 0: read files in order only
FETCH_BATCH=40     # names or CIDs per API call (keeps a URL far below any length limit)
FETCH_AGAIN=2      # requests again for a file whose transfer was cut off half-way (src_fetch)
RAM_LOW_KIB=32768  # a failed IPFS fetch with less MemAvailable than this names RAM (ram_low_note)

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
T_MD5=0   # centiseconds spent checking md5 of fetched files (status t_md5)
T_PLACE=0 # centiseconds spent placing them (sidecars, rename; status t_place)
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
ORDER=
ROOTS=
ORDER_KEY=0
LIST_PRE= # pid of list_prefetch's background fetch
DATA_Q=   # names waiting for a data job, in fetch order
DATA_RUN= # "NAME:PID" of the running data jobs
DATA_PROBE=
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
    [ -d "$WORK/down.$1" ] && S_UP=0
}

# src_down S: mark source S failed, for this process and every job; status 0 only for the first
# process to do so (it alone says so on the console).
src_down() {
    case $1 in
        P) P_UP=0 ;;
        *) M_UP=0 ;;
    esac
    mkdir "$WORK/down.$1" 2>/dev/null
}

# src_got S BYTES: count bytes source S delivered.
src_got() {
    case $1 in
        P) P_BYTES=$((P_BYTES + $2)) P_USED=1 ;;
        M) M_BYTES=$((M_BYTES + $2)) M_USED=1 ;;
    esac
}

# src_fetch S REL OUT [probe]: fetch REL from source S. 0 ok, 2 not found, 1 failed (then S is
# marked down; a source already down is not asked). FETCH_ERR says why.
#
# A transfer cut off after some bytes came is asked for again (FETCH_AGAIN times per file, within the
# source's deadline) before the source counts as down: the source is alive, only slow -- a seed
# paging hard on a small machine makes kubo's gateway give up on a block after its retrieval timeout
# and close the response half-way. Through kubo the blocks that came are in its store by then, so
# the next request goes fast up to the cut. A failure with no byte (refused, 5xx, a CID nobody has)
# still marks the source down at once. Each retry is one line in $WORK/again (status `fetch_again`).
src_fetch() {
    src "$1"
    if [ "$S_UP" != 1 ]; then
        FETCH_ERR="not asked: it failed before"
        return 1
    fi
    _sf_again=0
    while :; do
        # ipfs.gateway=: the file's blocks first, as one CAR checked block by block by kubo (gateway.sh)
        [ "$1" = P ] && [ -n "$GW_URL" ] && gw_wanted "$2" && gw_car "$2" "$S_DEADLINE"
        fetch_url "$S_URL/$2" "$3" "$S_DEADLINE" "${4:-}"
        _sf_rc=$?
        if [ "$_sf_rc" != 1 ] || [ "$FETCH_GOT" = 0 ] || [ "$_sf_again" -ge "$FETCH_AGAIN" ]; then
            break
        fi
        case $FETCH_ERR in "timed out"*) break ;; esac # the source's deadline: no time left
        [ "$1" = P ] && [ -n "$KUBO_PID" ] && ! kill -0 "$KUBO_PID" 2>/dev/null && break # kubo is gone
        [ -d "$WORK/down.$1" ] && break # another job found the source failing meanwhile
        _sf_again=$((_sf_again + 1))
        echo "$2" >>"$WORK/again"
        notice "$2" "$S_DESC: $2: $FETCH_ERR after $FETCH_GOT bytes; asking again"
    done
    src_result "$1" "$2" "$_sf_rc"
}

# src_result S REL RC: the outcome RC of fetching REL from S (as fetch_url's): a failure marks S down,
# the first process to do so says it once. Returns RC.
src_result() {
    if [ "$3" = 1 ] && src_down "$1"; then
        src "$1"
        [ "$1" = P ] && kubo_gone_note
        if [ "$1" = P ] && [ "$M_UP" = 1 ]; then
            warn "$S_DESC: $2: $FETCH_ERR; using the mirror from now on"
        else
            dbg "$S_DESC: $2: $FETCH_ERR (not asking this source again)"
        fi
    fi
    return "$3"
}

# list_prefetch: (ipfs:) ask kubo's gateway for <lst> in the background at once -- kubo_wait_peers
# calls this before it dials the peers, so the request is waiting inside kubo when the first peer
# connects, instead of starting after the dialling is done. fetch_list takes its outcome.
list_prefetch() {
    LIST_PRE=
    [ "$SCHEME" = ipfs ] && [ -n "$GATEWAY" ] && [ -n "$CID" ] || return 0
    mkdir -p "$WORK/pre"
    rm -f "$WORK/pre/list" "$WORK/pre/list.rc"
    (
        JOB_ERR=$WORK/pre/list.err
        fetch_url "${GATEWAY%/}/ipfs/$CID${SUBPATH:+/$SUBPATH}/$LST" "$WORK/pre/list" "$P_DEADLINE"
        _lp_rc=$?
        tick
        printf '%s %s\n%s\n' "$_lp_rc" "$NOW" "$FETCH_ERR" >"$WORK/pre/list.rc.part"
        mv -f "$WORK/pre/list.rc.part" "$WORK/pre/list.rc"
    ) </dev/null &
    LIST_PRE=$!
}

# list_taken S: status 0 if <lst> from source S is already in $WORK/list thanks to list_prefetch (then
# LIST_CS is when it came); otherwise its outcome as src_fetch's status (2 not found, 1 failed; 3: no
# prefetch: fetch it now).
list_taken() {
    [ "$1" = P ] && [ -n "$LIST_PRE" ] || return 3
    src P
    if [ "$S_UP" != 1 ]; then
        kill "$LIST_PRE" 2>/dev/null # kubo was given up on meanwhile
        LIST_PRE=
        return 3
    fi
    wait "$LIST_PRE" 2>/dev/null
    LIST_PRE=
    _lt_rc=1 _lt_cs='' FETCH_ERR=''
    { read -r _lt_rc _lt_cs; read -r FETCH_ERR; } <"$WORK/pre/list.rc" 2>/dev/null
    if [ "$_lt_rc" = 0 ]; then
        mv -f "$WORK/pre/list" "$WORK/list" || return 1
        LIST_CS=$_lt_cs
        return 0
    fi
    [ -n "$FETCH_ERR" ] || FETCH_ERR="no answer"
    src_result P "$LST" "$_lt_rc"
}

# kubo_gone_note: after the primary failed, FETCH_ERR names the likely cause: our kubo no longer
# running ("out of memory" when the kernel's log has it killing kubo -- RAM full at boot: TC's root is
# a tmpfs of 90% of the RAM, so the OOM killer usually strikes before the file system is full), or,
# with kubo alive, too little RAM available (ram_low_note).
kubo_gone_note() {
    [ -n "$KUBO_PID" ] || return 0
    if kill -0 "$KUBO_PID" 2>/dev/null; then
        ram_low_note
        return 0
    fi
    if dmesg 2>/dev/null | grep -q "Killed process $KUBO_PID "; then
        FETCH_ERR="$FETCH_ERR: kubo was killed by the kernel, out of memory (RAM too small for the extensions?)"
    else
        FETCH_ERR="$FETCH_ERR: kubo has stopped (see ${WORK#"$ROOT"}/kubo.log)"
    fi
}

# ram_low_note: kubo is alive but the machine is short of RAM (MemAvailable under RAM_LOW_KIB): FETCH_ERR
# says so. Measured in a 320 MiB guest with a 210 MiB closure: kubo's gateway drops the download
# ("connection closed prematurely") with no OOM kill and the file system not full -- the tmpfs pages,
# kubo's blocks and its heap share the RAM, and nothing else would name the cause.
ram_low_note() {
    mem_avail_kib
    [ -n "$MEM_AVAIL" ] && [ "$MEM_AVAIL" -lt "$RAM_LOW_KIB" ] || return 0
    FETCH_ERR="$FETCH_ERR: only $((MEM_AVAIL / 1024)) MiB of RAM available (RAM too small for the extensions?)"
}

# up_sources: SOURCES = the sources still worth asking, in order.
up_sources() {
    SOURCES=
    [ "$P_UP" = 1 ] && [ ! -d "$WORK/down.P" ] && SOURCES=P
    [ "$M_UP" = 1 ] && [ ! -d "$WORK/down.M" ] && SOURCES="$SOURCES M"
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

# notice NAME TEXT: a warning about extension NAME (TEXT is the whole line) on the console for the
# first MAX_SHOWN of them, in the log always. Counted in files, not variables: get_ext runs in the
# background data jobs, and a source lying about every file must not flood the console from there.
notice() {
    mkdir -p "$WORK/notices"
    # shellcheck disable=SC2012 # plain names we made (extension names)
    if [ "$(ls "$WORK/notices" | wc -l)" -lt "$MAX_SHOWN" ]; then
        : >"$WORK/notices/$1"
        warn "$2"
    else
        log "warning: $2"
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
    rm -rf "$WORK/down.P" "$WORK/down.M" "$WORK/job" "$WORK/meta" "$WORK/blocks" "$WORK/notices" "$WORK/again"
    up_sources
    for _l_s in $SOURCES; do
        LIST_CS=
        list_taken "$_l_s"
        _l_rc=$?
        if [ "$_l_rc" = 3 ]; then
            src_fetch "$_l_s" "$LST" "$WORK/list"
            _l_rc=$?
        fi
        src "$_l_s"
        _l_desc=$S_DESC
        if [ "$_l_rc" = 0 ]; then
            file_size "$WORK/list"
            if [ "$SIZE" -gt "$MAX_LIST_BYTES" ]; then
                LIST_ERR="$LST from $_l_desc is $SIZE bytes (at most $MAX_LIST_BYTES)"
                return 1
            fi
            if [ -z "$LIST_CS" ]; then
                tick
                LIST_CS=$NOW
            fi
            mark_at list "$LIST_CS"
            [ "$_l_s" = P ] || LIST_CS=
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

# machine_order WORD...: ORDERED = the words in this machine's order (lib/order.awk keyed by
# ORDER_KEY, and by $SUBKEY when set).
machine_order() {
    ORDERED=
    [ "$#" -gt 1 ] || { ORDERED=$*; return 0; }
    ORDERED=$(printf '%s\n' "$@" | awk -v key="$ORDER_KEY$SUBKEY" -f "$HOOK_LIB/order.awk" | tr '\n' ' ')
    ORDERED=${ORDERED% }
}
SUBKEY=

# ---------------------------------------------------------------- background jobs
# meta_job NAME: (background) NAME.dep from the first source that answers -> $WORK/dep/NAME.raw;
# the outcome (yes | none | fail, then FETCH_ERR) -> $WORK/meta/NAME. Meanwhile NAME.tcz.md5.txt is
# fetched from the first source too ($WORK/meta/NAME.md5.txt, and in NAME.md5.src from where), so
# the data job can ask for the .tcz at once: one request less between the list and the first byte.
meta_job() {
    JOB_ERR=$WORK/meta/$1.err
    up_sources
    _mj_md5=
    for _mj_s in $SOURCES; do
        (
            JOB_ERR=$WORK/meta/$1.md5.err
            src_fetch "$_mj_s" "$1.md5.txt" "$WORK/meta/$1.md5.txt" &&
                printf '%s\n' "$_mj_s" >"$WORK/meta/$1.md5.src"
        ) &
        _mj_md5=$!
        break
    done
    _mj_got=fail
    FETCH_ERR=
    for _mj_s in $SOURCES; do
        src_fetch "$_mj_s" "$1.dep" "$WORK/dep/$1.raw"
        case $? in
            0) _mj_got=yes; [ "$_mj_s" = P ] && from_kubo "$1" "$1.dep"; break ;;
            2) _mj_got=none; break ;;
        esac
    done
    [ -z "$_mj_md5" ] || wait "$_mj_md5"
    printf '%s\n%s\n' "$_mj_got" "${FETCH_ERR:-no source left}" >"$WORK/meta/$1.part"
    mv -f "$WORK/meta/$1.part" "$WORK/meta/$1"
}

# data_job NAME PROBE: (background) get_ext NAME; the outcome -> $WORK/job/NAME, two lines:
# "RC SOURCE BYTES MD5_CS PLACE_CS FIRST_BYTE_CS NEW" and the error text. PROBE "probe": this job
# notes when the first byte of its .tcz arrived (the boot's first byte: see get_ext).
data_job() {
    JOB_ERR=$WORK/job/$1.err
    T_MD5=0
    T_PLACE=0
    FIRST_BYTE_CS=
    [ "$2" = probe ] || FIRST_BYTE_CS=-
    if get_ext "$1"; then _dj_rc=0; else _dj_rc=1; fi
    [ "$2" = probe ] || FIRST_BYTE_CS=
    printf '%s %s %s %s %s %s %s\n%s\n' "$_dj_rc" "${EXT_SRC:--}" "${EXT_SIZE:-0}" "$T_MD5" "$T_PLACE" \
        "${FIRST_BYTE_CS:--}" "$GOT_NEW" "$EXT_ERR" >"$WORK/job/$1.part"
    mv -f "$WORK/job/$1.part" "$WORK/job/$1"
}

# data_start NAME: a data job for NAME in the background. Until the first byte is known, one job at a
# time probes for it (DATA_PROBE: that job's name).
data_start() {
    _ds_probe=-
    if [ -z "$FIRST_BYTE_CS" ] && [ -z "$DATA_PROBE" ]; then
        _ds_probe=probe
        DATA_PROBE=$1
    fi
    data_job "$1" "$_ds_probe" </dev/null &
    DATA_RUN="$DATA_RUN $1:$!"
}

# data_collect NAME: take in a finished data job's outcome (counters; a failure's console line).
data_collect() {
    _dc_rc=1 _dc_src=- _dc_size=0 _dc_md5=0 _dc_place=0 _dc_fb=- _dc_new=0 _dc_err=
    {
        read -r _dc_rc _dc_src _dc_size _dc_md5 _dc_place _dc_fb _dc_new
        read -r _dc_err
    } <"$WORK/job/$1" 2>/dev/null
    [ "$DATA_PROBE" = "$1" ] && DATA_PROBE=
    T_MD5=$((T_MD5 + ${_dc_md5:-0}))
    T_PLACE=$((T_PLACE + ${_dc_place:-0}))
    if [ "$_dc_fb" != - ] && [ -z "$FIRST_BYTE_CS" ]; then
        FIRST_BYTE_CS=$_dc_fb
        mark_at first_byte "$FIRST_BYTE_CS"
    fi
    if [ "$_dc_rc" = 0 ]; then
        src_got "$_dc_src" "${_dc_size:-0}"
        GOT_OK="$GOT_OK$1 "
        [ "$_dc_new" = 1 ] && DOWNLOADED="$DOWNLOADED$1 "
    else
        fail_ext "$1" "${_dc_err:-fetch job failed}"
    fi
}

# data_reap: collect every data job that has finished (its outcome file is there).
data_reap() {
    _dr_left=
    for _dr_j in $DATA_RUN; do
        _dr_name=${_dr_j%:*}
        if [ -f "$WORK/job/$_dr_name" ]; then
            wait "${_dr_j##*:}" 2>/dev/null
            data_collect "$_dr_name"
        else
            _dr_left="$_dr_left $_dr_j"
        fi
    done
    DATA_RUN=$_dr_left
}

# data_pump: start queued data jobs while fewer than FETCH_JOBS run.
data_pump() {
    data_reap
    while [ -n "$DATA_Q" ]; do
        # shellcheck disable=SC2086 # lists of checked names; globbing is off
        set -- $DATA_RUN
        [ "$#" -lt "$FETCH_JOBS" ] || return 0
        # shellcheck disable=SC2086
        set -- $DATA_Q
        _dp_name=$1
        shift
        DATA_Q=$*
        data_start "$_dp_name"
    done
}

# data_drain: run the queue to its end and wait for every data job.
data_drain() {
    while :; do
        data_pump
        [ -n "$DATA_RUN" ] || return 0
        nap 0.05
    done
}

# meta_level NAME...: the .dep of every NAME, FETCH_META_JOBS at a time (data jobs keep running).
meta_level() {
    while [ "$#" -gt 0 ]; do
        _ml_pids=
        _ml_i=0
        while [ "$#" -gt 0 ] && [ "$_ml_i" -lt "$FETCH_META_JOBS" ]; do
            meta_job "$1" </dev/null &
            _ml_pids="$_ml_pids $!"
            _ml_i=$((_ml_i + 1))
            shift
        done
        # shellcheck disable=SC2086
        wait $_ml_pids
        data_pump
    done
}

# may_trade: status 0 when other machines may hold blocks we need: several peers named, or LAN
# discovery on and kubo already connected to more peers than were named (asked once, through the RPC
# API's swarm/peers). mDNS is on by default, so most machines boot with it; one alone with its seed
# reads its files in order: block lists and block requests would only cost it time (measured in the
# boot benchmark: ~1 s more from the list to the first byte in an x86_64 TCG guest).
MAY_TRADE=
may_trade() {
    if [ -z "$MAY_TRADE" ]; then
        MAY_TRADE=0
        # shellcheck disable=SC2086 # multiaddrs: no blanks, globbing is off
        set -- $PEERS
        if [ "$#" -gt 1 ]; then
            MAY_TRADE=1
        elif [ "$KUBO_MDNS" = true ] && [ -n "$API_URL" ] &&
            bounded "$P_DEADLINE" 5 "$WGET" -q -O "$WORK/swarm-peers.out" --post-data= \
                "$API_URL/api/v0/swarm/peers" 2>/dev/null; then
            _mt_n=$(grep -o '"Peer": *"[^"]*"' "$WORK/swarm-peers.out" 2>/dev/null | sort -u | wc -l)
            [ "$_mt_n" -gt "$#" ] && MAY_TRADE=1
            dbg "LAN discovery: kubo has $_mt_n peer(s), $# named"
        fi
        dbg "block order: $([ "$MAY_TRADE" = 1 ] && echo "this machine's" || echo "the files' own")"
    fi
    [ "$MAY_TRADE" = 1 ]
}

# block_lists NAME...: with kubo, one `ls` per FETCH_BATCH names gives each file's blocks;
# $WORK/blocks/NAME lists them (one CID a line) for files of two blocks or more. A failed call only
# means those files are read in order.
block_lists() {
    [ "$FETCH_BLOCK_JOBS" -gt 0 ] && [ -n "$API_URL" ] && [ -n "$CID" ] && may_trade || return 0
    src P
    [ "$S_UP" = 1 ] || return 0
    mkdir -p "$WORK/blocks"
    _bl_base=/ipfs/$CID${SUBPATH:+/$SUBPATH}
    while [ "$#" -gt 0 ]; do
        _bl_q=
        _bl_i=0
        while [ "$#" -gt 0 ] && [ "$_bl_i" -lt "$FETCH_BATCH" ]; do
            _bl_q="$_bl_q&arg=$_bl_base/$1"
            _bl_i=$((_bl_i + 1))
            shift
        done
        case $_bl_q in
            *+*) _bl_q=$(printf '%s' "$_bl_q" | sed 's/+/%2B/g') ;; # "+" in a query means a space
        esac
        if bounded "$P_DEADLINE" 30 "$WGET" -q -O "$WORK/ls.out" --post-data= \
            "$API_URL/api/v0/ls?${_bl_q#&}&resolve-type=false&size=false" 2>"$WORK/ls.err"; then
            awk -v dir="$WORK/blocks" -f "$HOOK_LIB/blocks.awk" "$WORK/ls.out" 2>/dev/null
        else
            last_line "$WORK/ls.err"
            dbg "block lists: ${LAST:-ls failed}; reading those files in order"
        fi
    done
}

# prefetch_blocks NAME: (in a data job, kubo only) fetch NAME's blocks into kubo's store in this
# machine's order, FETCH_BLOCK_JOBS `refs` requests at a time (each asks for its blocks one after
# the other). Failures are ignored: the read that follows fetches whatever is missing.
prefetch_blocks() {
    [ -s "$WORK/blocks/$1" ] || return 0
    SUBKEY=/$1
    # shellcheck disable=SC2046 # CIDs: no blanks, globbing is off
    machine_order $(cat "$WORK/blocks/$1")
    SUBKEY=
    _pf_pids=
    _pf_w=0
    while [ "$_pf_w" -lt "$FETCH_BLOCK_JOBS" ]; do
        _pf_w=$((_pf_w + 1))
        (
            _pf_i=0
            _pf_q=
            _pf_n=0
            for _pf_c in $ORDERED; do
                _pf_i=$((_pf_i + 1))
                # worker W takes every FETCH_BLOCK_JOBS-th block, starting at its own
                [ $(((_pf_i - _pf_w) % FETCH_BLOCK_JOBS)) = 0 ] || continue
                _pf_q="$_pf_q&arg=$_pf_c"
                _pf_n=$((_pf_n + 1))
                if [ "$_pf_n" -ge "$FETCH_BATCH" ]; then
                    bounded "$P_DEADLINE" 0 "$WGET" -q -O /dev/null --post-data= \
                        "$API_URL/api/v0/refs?${_pf_q#&}" 2>/dev/null
                    _pf_q=
                    _pf_n=0
                fi
            done
            [ -z "$_pf_q" ] || bounded "$P_DEADLINE" 0 "$WGET" -q -O /dev/null --post-data= \
                "$API_URL/api/v0/refs?${_pf_q#&}" 2>/dev/null
        ) </dev/null &
        _pf_pids="$_pf_pids $!"
    done
    # shellcheck disable=SC2086
    wait $_pf_pids
}

# ---------------------------------------------------------------- the closure
# resolve_closure: ROOTS from the list; the closure breadth-first, a level at a time: the level's
# .dep files (meta_level), then its extensions into the data queue (fetched meanwhile by data jobs);
# at the end every job is waited for; ORDER = load order (deps first).
resolve_closure() {
    read_names "$WORK/list" "$LST" report
    ROOTS=${NAMES# }
    mkdir -p "$WORK/dep" "$WORK/meta" "$WORK/job"
    printf '' >"$WORK/edges"
    [ "$KUBO_MOUNTED" = 1 ] && GOT_OK="${GOT_OK}ipfs.tcz "
    ORDER_KEY=${KUBO_PEER_ID:-${NET_ADDR:-0}}
    _c_level=$ROOTS
    _c_seen=" "
    _c_n=0
    _c_full=0
    while [ -n "$_c_level" ] && [ "$_c_full" = 0 ]; do
        _c_todo=
        for _c_name in $_c_level; do
            case $_c_seen in *" $_c_name "*) continue ;; esac
            _c_seen="$_c_seen$_c_name "
            _c_n=$((_c_n + 1))
            if [ "$_c_n" -gt "$MAX_EXT" ]; then
                CLOSURE_STOP="the closure has more than $MAX_EXT extensions"
                fail_line "$CLOSURE_STOP; stopped there"
                _c_full=1
                break
            fi
            # shellcheck disable=SC2153 # DEADLINE is set by main.sh
            secs_left "$DEADLINE"
            if [ "$LEFT" -le 0 ]; then
                CLOSURE_STOP="no time left"
                fail_line "no time left after $((_c_n - 1)) extensions of the closure; stopped there"
                _c_full=1
                break
            fi
            printf '' >"$WORK/dep/$_c_name"
            if [ "$_c_name" = ipfs.tcz ] && [ "$KUBO_MOUNTED" = 1 ]; then
                dbg "ipfs.tcz: using the one from the initrd (already mounted)"
                continue
            fi
            _c_todo="$_c_todo $_c_name"
        done
        # shellcheck disable=SC2086 # names are checked plain names; globbing is off
        machine_order $_c_todo
        _c_todo=$ORDERED
        # shellcheck disable=SC2086
        meta_level $_c_todo
        _c_next=
        _c_data=
        for _c_name in $_c_todo; do
            _c_got=fail
            FETCH_ERR=
            { read -r _c_got; read -r FETCH_ERR; } <"$WORK/meta/$_c_name" 2>/dev/null
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
                        _c_next="$_c_next $_c_d"
                    done
                    ;;
                *)
                    fail_ext "$_c_name" "cannot fetch $_c_name.dep: ${FETCH_ERR:-no source left}"
                    continue
                    ;;
            esac
            _c_data="$_c_data $_c_name"
        done
        # shellcheck disable=SC2086
        block_lists $_c_data
        DATA_Q="$DATA_Q$_c_data"
        data_pump
        _c_level=$_c_next
    done
    data_drain
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
    mark fetched
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
# the right md5; place it atomically. Status 1 with EXT_ERR. EXT_SRC EXT_SIZE GOT_NEW: where it came
# from, how many bytes, whether it was downloaded (not found in optional/ already). T_MD5 T_PLACE
# grow by the time spent; FIRST_BYTE_CS is set if empty (the probe).
get_ext() {
    EXT_ERR=
    EXT_SRC=
    EXT_SIZE=0
    GOT_NEW=0
    _g_refused=
    up_sources
    mkdir -p "$WORK/get"
    for _g_s in $SOURCES; do
        src "$_g_s"
        _g_desc=$S_DESC
        [ "$S_UP" = 1 ] || continue # marked down meanwhile
        _g_pre=
        [ -f "$WORK/meta/$1.md5.src" ] && read -r _g_pre <"$WORK/meta/$1.md5.src"
        if [ "$_g_pre" = "$_g_s" ] && mv -f "$WORK/meta/$1.md5.txt" "$WORK/get/$1.md5.txt" 2>/dev/null; then
            rm -f "$WORK/meta/$1.md5.src" # fetched with the .dep (meta_job)
        else
            src_fetch "$_g_s" "$1.md5.txt" "$WORK/get/$1.md5.txt"
            case $? in
                0) ;;
                2) EXT_ERR="${EXT_ERR:+$EXT_ERR; }no $1.md5.txt at $_g_desc"; continue ;;
                *) EXT_ERR="${EXT_ERR:+$EXT_ERR; }$1.md5.txt from $_g_desc: $FETCH_ERR"; continue ;;
            esac
        fi
        if ! md5_expected "$WORK/get/$1.md5.txt"; then
            EXT_ERR="${EXT_ERR:+$EXT_ERR; }malformed $1.md5.txt at $_g_desc"
            continue
        fi
        [ "$_g_s" = P ] && from_kubo "$1" "$1.md5.txt"
        if [ -f "$OPT/$1" ]; then
            md5_of "$OPT/$1"
            if [ "$MD5" = "$MD5_WANT" ]; then
                dbg "$1: already in optional/ with the right md5"
                EXT_SRC=$_g_s
                place_sidecars "$1"
                return 0
            fi
        fi
        [ "$_g_s" = P ] && [ -n "$GATEWAY" ] && prefetch_blocks "$1"
        _g_probe=
        [ "$_g_s" = P ] && [ -z "$FIRST_BYTE_CS" ] && _g_probe=probe
        src_fetch "$_g_s" "$1" "$OPT/$1.part" "$_g_probe"
        case $? in
            0) ;;
            2) EXT_ERR="${EXT_ERR:+$EXT_ERR; }$1 not found at $_g_desc"; continue ;;
            *)
                ram_short
                EXT_ERR="${EXT_ERR:+$EXT_ERR; }$1 from $_g_desc: $FETCH_ERR${RAM_SHORT:+ ($RAM_SHORT)}"
                continue
                ;;
        esac
        tick
        _g_t0=$NOW
        md5_of "$OPT/$1.part"
        tick
        T_MD5=$((T_MD5 + NOW - _g_t0))
        if [ "$MD5" != "$MD5_WANT" ]; then
            rm -f "$OPT/$1.part"
            EXT_ERR="${EXT_ERR:+$EXT_ERR; }md5 mismatch from $_g_desc (expected $MD5_WANT, got $MD5)"
            _g_refused="${_g_refused:+$_g_refused; }md5 mismatch from $_g_desc (expected $MD5_WANT, got $MD5)"
            continue
        fi
        file_size "$OPT/$1.part"
        EXT_SRC=$_g_s
        EXT_SIZE=$SIZE
        [ "$_g_s" = P ] && from_kubo "$1" "$1"
        tick
        _g_t0=$NOW
        place_sidecars "$1"
        mv -f "$OPT/$1.part" "$OPT/$1" || { EXT_ERR="cannot move $1 into optional/"; return 1; }
        tick
        T_PLACE=$((T_PLACE + NOW - _g_t0))
        # A source that served wrong bytes is worth a line even when another one had the right ones.
        [ -n "$_g_refused" ] && notice "$1" "$1: refused $_g_refused; taken from $_g_desc"
        GOT_NEW=1
        dbg "$1: $SIZE bytes from $_g_desc, md5 ok"
        # kubo holds a second copy of these bytes: serve them from the placed file (lib/onecopy.sh)
        [ "$_g_s" = P ] && [ -n "$GATEWAY" ] && onecopy_placed "$1"
        return 0
    done
    [ -n "$EXT_ERR" ] || EXT_ERR="no source left to ask"
    return 1
}

# ram_short: RAM_SHORT = why a fetch may have failed for want of RAM -- the file system holding
# optional/ (TC: the RAM root) is nearly full, or kubo is gone (the kernel's OOM killer picks the
# biggest process) -- or empty. Goes into the extension's console line, so a machine too small for
# its onboot set says so (the base system boots either way).
ram_short() {
    RAM_SHORT=
    fs_kib "$OPT"
    case $FS_FREE in
        '' | *[!0-9]*) ;;
        *) [ "$FS_FREE" -lt 4096 ] && RAM_SHORT="does not fit: $FS_FREE KiB left in RAM (${MEM_MIB:-?} MiB)" ;;
    esac
    if [ -z "$RAM_SHORT" ] && [ -n "$KUBO_PID" ] && ! kill -0 "$KUBO_PID" 2>/dev/null; then
        RAM_SHORT="kubo is gone, killed for want of memory? (${MEM_MIB:-?} MiB RAM)"
    fi
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
    mark settled
    [ "$DEBUG" = 1 ] || rm -rf "$WORK/job" "$WORK/meta" "$WORK/blocks" "$WORK/down.P" "$WORK/down.M" \
        "$WORK/ls.out" "$WORK/ls.err" 2>/dev/null
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
