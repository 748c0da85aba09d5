# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# tcedir.sh -- coexistence with tce-setup's own tce= handling (the "tce dir shim").
#
# After we return, tce-setup derives a tce dir from the same tce= value: the part before the first
# "/" is a device that find_mountpoint cannot find, so the tce dir becomes "/" + the rest ("/tce"
# when there is no "/"; "http://h/p" gives "//h/p", i.e. "/h/p"). It then runs `mkdir <dir>/optional`
# and points /etc/sysconfig/tcedir at <dir>: a dangling link unless <dir> exists, and after boot
# `tce-load` exits 1 without a word. With `base` it keeps TC's RAM tce dir /tmp/tce instead.
#
# tcedir_plan works that path out and checks it (no writes: parse first). tcedir_make then creates it
# as a symlink to /tmp/tce (TC's RAM tce dir, with optional/ and an empty <lst>): only that one path
# (plus missing parents), never inside a system directory or through a symlink, and an existing
# directory is left alone. Every refusal is one console line.

# Top-level directories (and parts of /tmp) the shim never creates anything in. TC itself keeps
# /tmp/builtin (embedded extensions), /tmp/tcloop (loop mounts, one per extension) and /tmp/tce.
# /home (backed up) and /mnt (device mount points) count too.
TCEDIR_SYSTEM="bin boot dev etc home lib lib32 lib64 libx32 mnt opt proc root run sbin srv sys usr var"
TCEDIR_SYSTEM_TMP="builtin tcloop tce tce-ipfs"
TCEDIR_MAX=255 # whole path; each component also at most 255 (NAME_MAX)

TCEDIR_SHIM=     # the path tce-setup will use ("/tce", "/a/b"); empty: nothing to do
TCEDIR_REFUSE=   # why the shim will not make it (printed by tcedir_make)
TCEDIR_LST=      # the list file the shim creates in /tmp/tce (empty: none)

# tcedir_system PATH: status 0 when PATH (normalised, "/a/b") is a system location.
tcedir_system() {
    _ts_rest=${1#/}
    _ts_top=${_ts_rest%%/*}
    [ -n "$_ts_top" ] || return 0
    for _ts_d in $TCEDIR_SYSTEM; do
        [ "$_ts_top" = "$_ts_d" ] && return 0
    done
    if [ "$_ts_top" = tmp ]; then
        [ "$_ts_rest" = tmp ] && return 0
        _ts_sub=${_ts_rest#tmp/}
        _ts_sub=${_ts_sub%%/*}
        for _ts_d in $TCEDIR_SYSTEM_TMP; do
            [ "$_ts_sub" = "$_ts_d" ] && return 0
        done
    fi
    return 1
}

# tcedir_plan: TCEDIR_SHIM / TCEDIR_REFUSE from TCE_RAW (and `base`, lst=). Writes nothing.
tcedir_plan() {
    TCEDIR_SHIM=
    TCEDIR_REFUSE=
    TCEDIR_LST=
    # tce-setup skips its tce= handling when booting with base: the tce dir stays /tmp/tce.
    hasword base && return 0
    case $TCE_RAW in
        */*) _tp_dir=${TCE_RAW#*/} ;;
        *) _tp_dir=tce ;;
    esac
    while :; do
        case $_tp_dir in
            /*) _tp_dir=${_tp_dir#/} ;;
            *) break ;;
        esac
    done
    while :; do
        case $_tp_dir in
            */) _tp_dir=${_tp_dir%/} ;;
            *) break ;;
        esac
    done
    if [ "${#_tp_dir}" -gt "$TCEDIR_MAX" ]; then
        TCEDIR_REFUSE="tce-setup will use a ${#_tp_dir}-character path as the tce dir; too long, not creating it"
        return 0
    fi
    short "/$_tp_dir"
    case $_tp_dir in
        '' | *[!A-Za-z0-9._:+/-]* | *//* | . | .. | ./* | ../* | */. | */.. | */./* | */../*)
            TCEDIR_REFUSE="tce-setup will use '$SHORT' as the tce dir: not a safe path, not creating it"
            return 0
            ;;
    esac
    TCEDIR_SHIM=/$_tp_dir
    is_safe_name "$LST" && TCEDIR_LST=$LST
}

# tcedir_make: make TCEDIR_SHIM valid (see the top of this file). Status 0 unless something failed.
tcedir_make() {
    if [ -n "$TCEDIR_REFUSE" ]; then
        warn "$TCEDIR_REFUSE"
        return 0
    fi
    [ -n "$TCEDIR_SHIM" ] || return 0
    _tm_path=$ROOT$TCEDIR_SHIM
    if [ -d "$_tm_path/optional" ]; then
        dbg "tce dir shim: $TCEDIR_SHIM is already a tce dir"
        return 0
    fi
    if tcedir_system "$TCEDIR_SHIM"; then
        warn "tce-setup will use $TCEDIR_SHIM as the tce dir: inside a system directory, not creating it (tce-load will not work after boot; boot with base to keep /tmp/tce)"
        return 0
    fi
    if [ -L "$_tm_path" ] || [ -e "$_tm_path" ]; then
        warn "tce-setup will use $TCEDIR_SHIM as the tce dir, but it exists and is not one; leaving it alone"
        return 0
    fi
    # Each parent must be a real directory (never follow a symlink out of here) or be created.
    _tm_parent=$ROOT
    _tm_rest=${TCEDIR_SHIM#/}
    while :; do
        case $_tm_rest in
            */*) ;;
            *) break ;;
        esac
        _tm_parent=$_tm_parent/${_tm_rest%%/*}
        _tm_rest=${_tm_rest#*/}
        if [ -L "$_tm_parent" ]; then
            warn "tce-setup will use $TCEDIR_SHIM as the tce dir: ${_tm_parent#"$ROOT"} is a symlink, not creating it"
            return 0
        fi
        [ -d "$_tm_parent" ] && continue
        if [ -e "$_tm_parent" ] || ! mkdir "$_tm_parent" 2>/dev/null; then
            warn "tce-setup will use $TCEDIR_SHIM as the tce dir: cannot create ${_tm_parent#"$ROOT"}; tce-load will not work after boot"
            return 1
        fi
    done
    if ! mkdir -p "$ROOT/tmp/tce/optional" 2>/dev/null || ! ln -s /tmp/tce "$_tm_path" 2>/dev/null; then
        warn "tce-setup will use $TCEDIR_SHIM as the tce dir: cannot link it to /tmp/tce; tce-load will not work after boot"
        return 1
    fi
    dbg "tce dir shim: $TCEDIR_SHIM -> /tmp/tce"
    if [ -n "$TCEDIR_LST" ] && [ ! -e "$ROOT/tmp/tce/$TCEDIR_LST" ]; then
        _tm_user=tc
        [ -r "$ROOT/etc/sysconfig/tcuser" ] && read -r _tm_user <"$ROOT/etc/sysconfig/tcuser"
        # printf, not ":": a failed redirection of a special built-in ends the whole shell
        if printf '' >"$ROOT/tmp/tce/$TCEDIR_LST" 2>/dev/null; then
            chown "${_tm_user:-tc}:staff" "$ROOT/tmp/tce/$TCEDIR_LST" 2>/dev/null
            chmod 664 "$ROOT/tmp/tce/$TCEDIR_LST" 2>/dev/null
        fi
    fi
    return 0
}
