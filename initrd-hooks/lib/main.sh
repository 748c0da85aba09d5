# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# main.sh -- the boot flow: parse first, act later. Every exit path prints one final console line
# ("tce-ipfs: loaded N extensions from <source> in S s" or "tce-ipfs: FAILED: <reason>"), writes
# the status file and exits 0: the base system always boots.

HOOK_LIB=${TCE_IPFS_LIB:-${ROOT:-}/usr/local/lib/tce-ipfs}
# shellcheck source=lib.sh
. "$HOOK_LIB/lib.sh"
# shellcheck source=parse.sh
. "$HOOK_LIB/parse.sh"
# shellcheck source=net.sh
. "$HOOK_LIB/net.sh"
# shellcheck source=kubo.sh
. "$HOOK_LIB/kubo.sh"
# shellcheck source=public.sh
. "$HOOK_LIB/public.sh"
# shellcheck source=fetch.sh
. "$HOOK_LIB/fetch.sh"
# shellcheck source=onecopy.sh
. "$HOOK_LIB/onecopy.sh"
# shellcheck source=tcedir.sh
. "$HOOK_LIB/tcedir.sh"
# shellcheck source=loader.sh
. "$HOOK_LIB/loader.sh"
# shellcheck source=car.sh
. "$HOOK_LIB/car.sh"
# shellcheck source=gateway.sh
. "$HOOK_LIB/gateway.sh"

HOOK_VERSION=unknown
HOOK_ARCH=unknown
RESULT=
REASON=
T_START=0
T_NET=
T_END=0
KREL=
RAM_USED=
RAM_USED_START=

# ---------------------------------------------------------------- status and the final line
# status_kv KEY VALUE: one line of the status file (values never contain newlines).
status_kv() {
    printf '%s=%s\n' "$1" "$2"
}

write_status() {
    _st_total=$((T_END - T_START))
    mkdir -p "$WORK"
    gw_stats # (PEERS_OK too, when the peers were dialled in the background)
    {
        status_kv result "$RESULT"
        status_kv scheme "$SCHEME"
        status_kv cid "$CID"
        [ -n "$IPNS_NAME" ] && status_kv ipns "$IPNS_NAME"
        status_kv subpath "$SUBPATH"
        [ -n "$HTTP_URL" ] && status_kv url "$HTTP_URL"
        [ -n "$MIRROR" ] && status_kv mirror "$MIRROR"
        status_kv lst "$LST"
        status_kv loaded "$PLACED_COUNT"
        status_kv failed "$FAIL_COUNT"
        status_kv extensions "$(printf '%s' "$PLACED" | tr ' ' ',')"
        status_kv bytes "$((P_BYTES + M_BYTES))"
        status_kv bytes_primary "$P_BYTES"
        status_kv bytes_mirror "$M_BYTES"
        status_kv peers_connected "$PEERS_OK"
        [ -s "$WORK/again" ] && status_kv fetch_again "$(wc -l <"$WORK/again" | tr -d ' ')"
        [ -n "$CAR_NOTE" ] && status_kv car "$CAR_NOTE"
        if [ -n "$GW_NOTE" ]; then
            status_kv ipfs_gateway "$GW_NOTE"
            status_kv ipfs_gateway_cars "$GW_CARS"
            status_kv bytes_ipfs_gateway "$GW_BYTES"
        fi
        status_kv net "$NET"
        [ -n "$PROVIDERS" ] && status_kv providers "$(printf '%s' "$PROVIDERS" | tr ' ' ',')"
        [ -n "$ROUTE" ] && status_kv route "$ROUTE"
        fmt_cs "$T_START"
        status_kv t_start "$FMT"
        [ -n "$T_NET" ] && { fmt_cs "$T_NET"; status_kv t_net "$FMT"; }
        if [ -n "$KUBO_T0" ]; then
            fmt_cs "$((KUBO_T0 - T_START))"
            status_kv t_kubo_start "$FMT"
        fi
        [ -n "$KUBO_READY_CS" ] && { fmt_cs "$KUBO_READY_CS"; status_kv t_kubo_ready "$FMT"; }
        if [ -n "$KUBO_T0" ] && [ -n "$LIST_CS" ]; then
            fmt_cs "$((LIST_CS - KUBO_T0))"
            status_kv t_list "$FMT"
        fi
        if [ -n "$KUBO_T0" ] && [ -n "$T_PROVIDER_CS" ]; then
            fmt_cs "$((T_PROVIDER_CS - KUBO_T0))"
            status_kv t_provider "$FMT"
        fi
        if [ -n "$KUBO_T0" ] && [ -n "$FIRST_BYTE_CS" ]; then
            fmt_cs "$((FIRST_BYTE_CS - KUBO_T0))"
            status_kv t_first_byte "$FMT"
        fi
        fmt_cs "$_st_total"
        status_kv t_total "$FMT"
        fmt_cs "$T_MD5"
        status_kv t_md5 "$FMT"
        fmt_cs "$T_PLACE"
        status_kv t_place "$FMT"
        fmt_cs "$T_START"
        _st_marks="start:$FMT${MARKS:+,$MARKS}"
        fmt_cs "$T_END"
        status_kv marks "$_st_marks,end:$FMT"
        status_kv kubo_pid "$KUBO_PID"
        status_kv ipfs_path "${IPFS_PATH:-}"
        status_kv api "$API"
        status_kv gateway "$GATEWAY"
        status_kv seed "$SEED"
        [ -n "$KUBO_PEER_ID" ] && status_kv peer_id "$KUBO_PEER_ID"
        onecopy_count
        status_kv onecopy "$ONECOPY_N"
        status_kv onecopy_bytes "$ONECOPY_BYTES"
        [ -n "$RAM_USED_START" ] && status_kv ram_used_start "$RAM_USED_START"
        [ -n "$MEM_MIB" ] && status_kv mem_mib "$MEM_MIB"
        [ -n "$PINNED" ] && status_kv pinned "$PINNED"
        [ "$PIN_FAILED" -gt 0 ] && status_kv pin_failed "$PIN_FAILED"
        status_kv version "$HOOK_VERSION"
        # free text, last; no double quotes or backslashes (readers split the file shell-style)
        status_kv reason "$(printf '%s' "$REASON" | tr '\042\134' '\047\047')"
    } | write_atomic "$STATUS"
}

# source_desc: SRC_DESC = where the placed files came from (for the final line).
source_desc() {
    if [ "$P_USED" = 1 ] && [ "$M_USED" = 1 ]; then
        SRC_DESC="$P_DESC and $M_DESC"
    elif [ "$M_USED" = 1 ]; then
        SRC_DESC=$M_DESC
    else
        SRC_DESC=$P_DESC
    fi
}

# finish: write the list, the final line and the status; stop kubo if it should not seed; exit 0.
finish() {
    write_list
    tick
    T_END=$NOW
    fmt_cs "$((T_END - T_START))"
    _f_secs=$FMT
    source_desc
    [ "$HIDDEN" -gt 0 ] && err "... and $HIDDEN more problem(s), not shown (all in ${LOG#"$ROOT"})"
    case $RESULT in
        ok) info "loaded $PLACED_COUNT extensions from $SRC_DESC in $_f_secs s" ;;
        partial) info "FAILED: $FAIL_COUNT problem(s), first: $FIRST_FAIL; loaded $PLACED_COUNT extensions from $SRC_DESC in $_f_secs s" ;;
        *) info "FAILED: $REASON" ;;
    esac
    if [ -n "$KUBO_PID" ]; then
        if [ "$PLACED_COUNT" -eq 0 ] && [ "$RESULT" != ok ]; then
            dbg "stopping kubo: nothing was fetched"
            kubo_stop
            kubo_free
        elif [ "$SEED" = 0 ]; then
            dbg "stopping kubo: ipfs.seed=0"
            kubo_stop
            kubo_free
        fi
    fi
    write_status
    # Seeding: pin what was fetched, in the background (pinned= is added to the status when done).
    if [ -n "$KUBO_PID" ] && [ -n "$API_URL" ] && [ -n "$CID" ]; then
        seed_pins_bg
    fi
    loader_adopt_kubo
    [ "$DEBUG" = 1 ] || rm -rf "$WORK/get" "$WORK/dep" "$WORK/names.out" "$WORK/order.out" 2>/dev/null
    exit 0
}

# die_soft REASON: give up (base system boots on). Main shell only.
die_soft() {
    RESULT=failed
    REASON=$1
    finish
}

# ---------------------------------------------------------------- the flow
tce_ipfs_main() {
    umask 022
    set -f
    tick
    T_START=$NOW
    read_cmdline || exit 0
    parse_scheme || exit 0 # tce= absent or not ours: do nothing at all
    # RAM in use before this boot fetches anything (status ram_used_start; nothing written yet)
    ram_used_kib
    RAM_USED_START=$RAM_USED
    # Parse first: every boot code, the tce dir tce-setup will use, the loader. Nothing is written
    # before this point.
    parse_codes
    tcedir_plan
    loader_detect
    if [ -r "$HOOK_LIB/build.conf" ]; then
        # shellcheck source=/dev/null
        . "$HOOK_LIB/build.conf"
    fi
    mkdir -p "$WORK" "${LOG%/*}" 2>/dev/null
    rm -rf "$PIN_NOTES" "$GW_DIR" "$WORK/down.G" "$WORK/onecopy.done" "$WORK/onecopy.todo" "$WORK/onecopy.off" "$WORK/oc" "$WORK/oc.lock"
    log "tce-ipfs hook $HOOK_VERSION ($HOOK_ARCH), tce=$(printf '%s' "$TCE_RAW" | cut -c1-120), loader $LOADER"
    [ "$DEBUG" = 1 ] && dbg "debug on; log in ${LOG#"$ROOT"}"
    if [ -n "$PARSE_WARNINGS" ]; then
        printf '%s\n' "$PARSE_WARNINGS" | while IFS= read -r _m_w; do warn "$_m_w"; done
    fi
    # tce-setup derives its tce dir from tce= whatever we make of the rest: keep it valid.
    tcedir_make
    [ -z "$PARSE_ERRORS" ] || die_soft "bad boot code: $PARSE_ERRORS"
    KREL=$("$UNAME" -r 2>/dev/null)

    DEADLINE=$((T_START + TIMEOUT * 100))
    P_DEADLINE=$DEADLINE
    if [ -n "$MIRROR" ]; then
        P_DEADLINE=$((T_START + TIMEOUT * 200 / 3))
        M_URL=$MIRROR
        M_DESC="mirror $MIRROR"
        M_DEADLINE=$DEADLINE
        M_UP=1
    fi
    case $SCHEME in
        ipfs) P_DESC="ipfs:$CID${SUBPATH:+/$SUBPATH}" ;;
        ipns) P_DESC="ipns:$IPNS_NAME${SUBPATH:+/$SUBPATH}" ;;
        http) P_DESC=$HTTP_URL ;;
    esac
    info "fetching $LST from $P_DESC${MIRROR:+ (mirror $MIRROR)}, timeout $TIMEOUT s"

    # DHCP runs in the background while kubo's repo is initialised (both take a while under TCG).
    net_kick
    P_ERR=
    case $SCHEME in
        ipfs | ipns)
            if ! kubo_mount || ! kubo_prepare "$P_DEADLINE"; then
                P_ERR=$KUBO_ERR
            fi
            ;;
    esac
    if ! net_up "$DEADLINE"; then
        die_soft "network: $NET_ERR within $TIMEOUT s"
    fi
    tick
    T_NET=$((NOW - T_START))
    # ipfs.gateway=: <lst>'s CAR comes over the network while kubo starts (checked once it runs)
    [ -z "$P_ERR" ] && gw_prefetch_list "$P_DEADLINE"

    case $SCHEME in
        ipfs | ipns)
            if [ -n "$P_ERR" ]; then
                :
            elif ! kubo_start "$P_DEADLINE"; then
                P_ERR=$KUBO_ERR
            elif ! car_seed "$P_DEADLINE" && ! gw_first "$P_DEADLINE" && ! kubo_wait_peers "$P_DEADLINE"; then
                P_ERR=$KUBO_ERR
            elif [ "$NET" = public ] && [ "$PEERS_OK" = 0 ] && [ "$CAR_NOTE" != ok ] &&
                ! route_bootstrap "$P_DEADLINE"; then
                P_ERR=$KUBO_ERR
            elif [ "$SCHEME" = ipns ] && ! kubo_resolve "$P_DEADLINE"; then
                P_ERR=$KUBO_ERR
            elif [ "$NET" = public ] && [ "$PEERS_OK" = 0 ] && [ "$CAR_NOTE" != ok ] &&
                ! route_providers "$P_DEADLINE"; then
                P_ERR=$KUBO_ERR
            else
                P_URL="${GATEWAY%/}/ipfs/$CID${SUBPATH:+/$SUBPATH}"
                [ "$SCHEME" = ipns ] && P_DESC="ipfs:$CID${SUBPATH:+/$SUBPATH}"
                P_UP=1
            fi
            ;;
        http)
            P_URL=$HTTP_URL
            P_UP=1
            ;;
    esac
    if [ "$P_UP" != 1 ]; then
        if [ "$M_UP" = 1 ]; then
            err "$P_DESC: $P_ERR"
            info "falling back to mirror $MIRROR"
            kubo_stop
        else
            die_soft "$P_DESC: $P_ERR"
        fi
    fi

    [ -n "$GW_URL" ] && [ "$P_UP" = 1 ] && gw_prepare # (once here: the fetch jobs share its files)
    fetch_list || die_soft "$LIST_ERR"
    mkdir -p "$OPT"
    resolve_closure
    settle

    if [ "$FAIL_COUNT" -eq 0 ]; then
        RESULT=ok
    elif [ "$PLACED_COUNT" -gt 0 ]; then
        RESULT=partial
        REASON=$FIRST_FAIL
    else
        RESULT=failed
        REASON="nothing loaded: $FAIL_COUNT problem(s), first: $FIRST_FAIL"
    fi
    finish
}
