# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# lib.sh -- shared helpers of the tce-ipfs boot hook: paths, logging, boot-code access, clock,
# bounded commands and HTTP fetches. POSIX sh for busybox ash (also runs under dash).
#
# Every path is "$ROOT/..." so host tests can run the hook against a fake root; ROOT is empty at boot.
# No function here is ever called inside $(...) when it may exit: die_soft must run in the main shell.

: "${ROOT:=}"
HOOK_LIB=${TCE_IPFS_LIB:-$ROOT/usr/local/lib/tce-ipfs}
WORK=$ROOT/tmp/tce-ipfs             # RAM: kubo repo, daemon log, status, scratch
LOG=$ROOT/var/log/tce-ipfs.log
CONSOLE=$ROOT/dev/console
BUILTIN=$ROOT/tmp/builtin           # TC's embed dir: tce-setup loads $BUILTIN/<lst> from optional/
OPT=$BUILTIN/optional
STATUS=$WORK/status
DEBUG=0

# The commands that touch the machine or the network, by variable. At boot they are the plain names.
# Host tests point TCE_IPFS_TOOLDIR at a directory of fakes, used by path: busybox ash built with
# SH_STANDALONE runs its own applets ahead of anything on PATH (also under `timeout`), so PATH alone
# cannot fake them. tool VAR NAME: VAR = NAME, or the fake of it (no subshell: a fork costs ~10 ms
# in a slow guest).
tool() {
    _tool=$2
    [ -n "${TCE_IPFS_TOOLDIR:-}" ] && [ -x "$TCE_IPFS_TOOLDIR/$2" ] && _tool=$TCE_IPFS_TOOLDIR/$2
    eval "$1=\$_tool"
}
tool IP ip
tool IFCONFIG ifconfig
tool MOUNT mount
tool UDHCPC udhcpc
tool WGET wget
tool NC nc
tool UNAME uname
tool MODPROBE modprobe

# ---------------------------------------------------------------- logging
# Console lines start and end with a newline of their own: tc-config draws a spinner on the console
# while tce-setup runs, and a line of ours must never be glued to it.
_console() {
    { printf '\n%s\n' "tce-ipfs: $*" >>"$CONSOLE"; } 2>/dev/null || printf '%s\n' "tce-ipfs: $*" >&2
    log "$*"
}

log() {
    tick
    fmt_cs "$NOW"
    { printf '[%s] %s\n' "$FMT" "$*" >>"$LOG"; } 2>/dev/null
}

info() { _console "$*"; }
warn() { _console "warning: $*"; }
err() { _console "error: $*"; }
dbg() {
    if [ "$DEBUG" = 1 ]; then
        tick
        fmt_cs "$NOW"
        _console "debug: [$FMT] $*"
    else
        log "$*"
    fi
}

# ---------------------------------------------------------------- clock (no forks)
# tick: NOW = uptime in centiseconds. fmt_cs CS: FMT = "S.d" (seconds, one decimal).
tick() {
    read -r _up _rest </proc/uptime || _up=0.00
    _s=${_up%.*}
    _f=${_up#*.}
    [ "$_f" = "$_up" ] && _f=0
    _f=${_f%"${_f#??}"}
    _f=${_f#0}
    NOW=$((_s * 100 + ${_f:-0}))
}

fmt_cs() {
    FMT="$(($1 / 100)).$(($1 % 100 / 10))"
}

# secs_left DEADLINE_CS: LEFT = whole seconds until the deadline (may be <= 0).
secs_left() {
    tick
    LEFT=$((($1 - NOW) / 100))
}

# mark NAME: MARKS gets "NAME:<uptime S.d>" -- when a step of the boot finished, in the order they
# happen (status key marks=; the boot benchmark turns them into its per-step bars).
MARKS=
mark() {
    tick
    mark_at "$1" "$NOW"
}

# mark_at NAME CS: the same for a moment noted earlier (uptime in centiseconds).
mark_at() {
    fmt_cs "$2"
    MARKS="${MARKS:+$MARKS,}$1:$FMT"
}

# nap: a short poll interval (busybox and dash-era sleeps both take fractions on TC; fall back to 1 s).
nap() {
    sleep "${1:-0.2}" 2>/dev/null || sleep 1
}

# ---------------------------------------------------------------- boot codes
# The cmdline is read once (read_cmdline); getarg/getargbool split it on blanks like TC's
# `for i in $(cat /proc/cmdline)`; the LAST occurrence of a code wins, as in tce-setup.
read_cmdline() {
    CMDLINE=
    [ -r "$ROOT/proc/cmdline" ] || return 1
    read -r CMDLINE <"$ROOT/proc/cmdline" || [ -n "$CMDLINE" ]
}

# getarg NAME: print the value of the last NAME=value word; status 1 when NAME= is absent.
getarg() {
    _ga_found=1
    _ga_val=
    for _ga_w in $CMDLINE; do
        case $_ga_w in
            "$1="*) _ga_val=${_ga_w#*=}; _ga_found=0 ;;
        esac
    done
    [ "$_ga_found" = 0 ] || return 1
    printf '%s\n' "$_ga_val"
}

# hasarg NAME: status 0 if the bare word NAME or NAME=anything is present.
hasarg() {
    for _ha_w in $CMDLINE; do
        case $_ha_w in
            "$1" | "$1="*) return 0 ;;
        esac
    done
    return 1
}

# hasword WORD: status 0 if the bare word WORD is present (how tce-setup tests `base`, `cde`).
hasword() {
    for _hw_w in $CMDLINE; do
        [ "$_hw_w" = "$1" ] && return 0
    done
    return 1
}

# getargbool DEFAULT NAME: print 1 or 0. Bare NAME means 1; NAME=0/no/off/false means 0;
# NAME=1/yes/on/true means 1; anything else prints "?" (the caller reports it).
getargbool() {
    if ! hasarg "$2"; then
        printf '%s\n' "$1"
        return 0
    fi
    _gb_v=$(getarg "$2") || { printf '1\n'; return 0; }
    case $_gb_v in
        1 | yes | on | true) printf '1\n' ;;
        0 | no | off | false) printf '0\n' ;;
        *) printf '?\n' ;;
    esac
}

# ---------------------------------------------------------------- commands with a bound
# bounded DEADLINE_CS MAXSECS CMD...: run CMD under `timeout`, never past the deadline.
# Status 124 without running CMD when no time is left.
bounded() {
    secs_left "$1"
    _b_s=$LEFT
    [ "$2" -gt 0 ] && [ "$2" -lt "$_b_s" ] && _b_s=$2
    shift 2
    [ "$_b_s" -ge 1 ] || return 124
    timeout "$_b_s" "$@"
}

# ---------------------------------------------------------------- HTTP fetch (busybox wget)
# disk_full DIR: status 0 when DIR's file system is (nearly) full: under 4 MiB free, FREE_KB says how
# much (from `stat -f`; without it, a 4 KiB test write decides and FREE_KB is empty). At boot this is
# the RAM: kubo's blocks and the .tcz files share it, and a failed block write frees its temp file
# again, so "nearly" matters.
disk_full() {
    FREE_KB=
    _d_stat=$(stat -f -c '%a %S' "$1" 2>/dev/null)
    _d_avail=${_d_stat% *}
    _d_bsize=${_d_stat#* }
    case "$_d_avail:$_d_bsize" in
        :* | *: | *[!0-9:]*) ;;
        *)
            FREE_KB=$((_d_avail * _d_bsize / 1024))
            [ "$FREE_KB" -lt 4096 ]
            return
            ;;
    esac
    if printf '%4096s' '' >"$1/.tce-ipfs-space" 2>/dev/null; then
        rm -f "$1/.tce-ipfs-space"
        return 1
    fi
    rm -f "$1/.tce-ipfs-space"
    return 0
}

# fetch_url URL OUT DEADLINE_CS [probe]: 0 = fetched, 2 = not found (HTTP 404), 1 = other failure
# (FETCH_ERR says why; FETCH_GOT = the bytes that came before it, 0 if none). busybox 1.35's
# `wget -T` crashes, so the bound is `timeout`.
# With "probe", FIRST_BYTE_CS is set to the moment OUT first had data. JOB_ERR (set in background
# jobs) keeps their wget error files apart.
JOB_ERR=
fetch_url() {
    _f_url=$1
    _f_out=$2
    _f_err=${JOB_ERR:-$WORK/wget.err}
    FETCH_ERR=
    FETCH_GOT=0
    rm -f "$_f_out"
    secs_left "$3"
    _f_s=$LEFT
    if [ "$_f_s" -lt 1 ]; then
        FETCH_ERR="no time left"
        return 1
    fi
    if [ "${4:-}" = probe ]; then
        timeout "$_f_s" "$WGET" -q -O "$_f_out" "$_f_url" 2>"$_f_err" &
        _f_pid=$!
        while kill -0 "$_f_pid" 2>/dev/null; do
            if [ -s "$_f_out" ]; then
                tick
                FIRST_BYTE_CS=$NOW
                break
            fi
            nap 0.05
        done
        wait "$_f_pid"
        _f_rc=$?
        if [ -z "${FIRST_BYTE_CS:-}" ] && [ -s "$_f_out" ]; then
            tick
            FIRST_BYTE_CS=$NOW
        fi
    else
        timeout "$_f_s" "$WGET" -q -O "$_f_out" "$_f_url" 2>"$_f_err"
        _f_rc=$?
    fi
    [ "$_f_rc" = 0 ] && return 0
    file_size "$_f_out"
    FETCH_GOT=$SIZE
    # Out of RAM (at boot /tmp is the root file system): say so, not "wget exit 1". Probed before the
    # partial file is removed, which would free the space again.
    _f_dir=${_f_out%/*}
    if ! grep -q ' 404' "$_f_err" 2>/dev/null && disk_full "$_f_dir"; then
        rm -f "$_f_out"
        FETCH_GOT=0 # not a slow source: nothing to ask again
        FETCH_ERR="no space left in ${_f_dir#"$ROOT"} (${FREE_KB:-0} KiB free: RAM full?)"
        return 1
    fi
    rm -f "$_f_out"
    if grep -q ' 404' "$_f_err" 2>/dev/null; then
        FETCH_ERR="not found"
        return 2
    fi
    case $_f_rc in
        124 | 137 | 143) FETCH_ERR="timed out after ${_f_s} s" ;;
        *)
            FETCH_ERR=$(grep -v '^ *$' "$_f_err" 2>/dev/null | head -n 1 | cut -c1-160)
            FETCH_ERR=${FETCH_ERR#wget: }
            [ -n "$FETCH_ERR" ] || FETCH_ERR="wget exit $_f_rc"
            ;;
    esac
    return 1
}

# ---------------------------------------------------------------- misc
# file_size FILE: SIZE = bytes (0 if missing).
file_size() {
    SIZE=0
    [ -f "$1" ] || return 0
    SIZE=$(wc -c <"$1" 2>/dev/null | tr -d ' ')
    SIZE=${SIZE:-0}
}

# md5_of FILE: MD5 = hex digest.
md5_of() {
    MD5=$(md5sum "$1" 2>/dev/null | cut -d' ' -f1)
}

# mem_avail_kib: MEM_AVAIL = MemAvailable in KiB, or empty.
mem_avail_kib() {
    MEM_AVAIL=$(awk '/^MemAvailable:/ { print $2; exit }' "$ROOT/proc/meminfo" 2>/dev/null)
    case $MEM_AVAIL in
        *[!0-9]*) MEM_AVAIL= ;;
    esac
}

# write_atomic FILE: copy stdin to FILE.part, then rename (readers never see half a file). A failed
# write (RAM full) leaves no FILE.part behind.
write_atomic() {
    if cat >"$1.part" && mv -f "$1.part" "$1"; then
        return 0
    fi
    rm -f "$1.part"
    return 1
}

# in_batches N FILE CMD [ARG...]: `CMD ARG... LINE...` for every N lines of FILE, then once for the
# lines left over (none for an empty FILE): one API call per batch, its URL well under any length
# limit. The lines are words (checked names, CIDs: no blanks); globbing is turned off. Status: the
# last call's (0 when there was none).
in_batches() {
    set -f
    _ib_size=$1
    _ib_file=$2
    shift 2
    _ib_batch=
    _ib_n=0
    _ib_rc=0
    while read -r _ib_line; do
        _ib_batch="$_ib_batch $_ib_line"
        _ib_n=$((_ib_n + 1))
        if [ "$_ib_n" -ge "$_ib_size" ]; then
            # shellcheck disable=SC2086 # words, see above
            "$@" $_ib_batch
            _ib_rc=$?
            _ib_batch=
            _ib_n=0
        fi
    done <"$_ib_file"
    [ -z "$_ib_batch" ] && return "$_ib_rc"
    # shellcheck disable=SC2086
    "$@" $_ib_batch
}
