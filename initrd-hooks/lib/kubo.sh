# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# kubo.sh -- run kubo from /tmp/builtin/optional/ipfs.tcz with a RAM repo, dial peers, resolve IPNS.
#
# The hook mounts ipfs.tcz itself, exactly where and how tce-load would (loop, ro, /tmp/tcloop/ipfs):
# tce-load later finds it in /etc/mtab, skips the mount and only links it into / -- so kubo runs
# before tce-setup's list step and ends up a normal loaded extension (listed first in <lst>).
#
# Node configuration (`ipfs init --profile=test,lowpower` + four keys, set by lib/kuboconf.awk):
#   test      API and gateway on 127.0.0.1 (port 0 = any free one; kubo writes repo/api and
#             repo/gateway), no bootstrap peers, AutoConf off, mDNS off, no NAT port mapping, AutoTLS off
#   lowpower  no DHT/AutoNAT/relay services; connection manager 20..40 connections
#   Routing.Type none   (dhtclient for ipns:, so the name can be asked of the dialled peers)
#   Addresses.Swarm     /ip4/0.0.0.0/tcp/<ipfs.port>: LAN peers can fetch from us afterwards
#   Discovery.MDNS      on unless ipfs.mdns=0: machines booting on one LAN find each other (also
#                       next to ipfs.peers=, which only names the seed) and trade blocks; multicast
#                       stays on the machine's own link. In a private swarm only same-key peers connect.
#   Peering.Peers       ipfs.peers: kubo dials them as it starts and keeps/reconnects those links
# ipfs.net=public (and ipfs.seed=0) change more keys: lib/public.sh.
# Environment: IPFS_TELEMETRY=off, GOMEMLIMIT (soft heap cap for a small machine).

IPFS_TCZ=$OPT/ipfs.tcz
KUBO_MNT=$ROOT/tmp/tcloop/ipfs
KUBO_GOMEMLIMIT=100MiB # soft Go heap cap (see README); kubo stays well under 150 MiB RSS
KUBO_BIN=
KUBO_PID=
KUBO_MOUNTED=0
KUBO_ERR=
KUBO_T0=
KUBO_READY_CS=
GATEWAY=
API=
API_URL=
PEERS_OK=0
KUBO_PEER_ID=
KUBO_PIN_MAX=30 # seconds for one pin/add call (the blocks are local: it normally takes milliseconds)
PINNED=
PIN_FAILED=0

# last_line FILE: LAST = last non-blank line of FILE, cut to 160 characters.
last_line() {
    LAST=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-160)
    LAST=${LAST#Error: }
}

# kubo_mount: mount ipfs.tcz (if present) and pick the ipfs binary. Status 1 with KUBO_ERR.
kubo_mount() {
    if [ -f "$IPFS_TCZ" ]; then
        mkdir -p "$KUBO_MNT"
        if grep -q " $KUBO_MNT " "$ROOT/proc/mounts" 2>/dev/null; then
            dbg "ipfs.tcz is already mounted at $KUBO_MNT"
        else
            "$MODPROBE" -q squashfs 2>/dev/null
            "$MODPROBE" -q loop 2>/dev/null
            if ! "$MOUNT" -t squashfs -o loop,ro "$IPFS_TCZ" "$KUBO_MNT" >"$WORK/mount.err" 2>&1; then
                last_line "$WORK/mount.err"
                KUBO_ERR="cannot mount ipfs.tcz: ${LAST:-mount failed}"
                return 1
            fi
        fi
        KUBO_MOUNTED=1
        for _k_c in usr/local/bin/ipfs usr/bin/ipfs; do
            if [ -x "$KUBO_MNT/$_k_c" ]; then
                KUBO_BIN=$KUBO_MNT/$_k_c
                break
            fi
        done
    fi
    [ -n "$KUBO_BIN" ] || KUBO_BIN=$(command -v ipfs 2>/dev/null)
    if [ -z "$KUBO_BIN" ]; then
        KUBO_ERR="no kubo: /tmp/builtin/optional/ipfs.tcz has no usr/local/bin/ipfs and ipfs is not on PATH"
        return 1
    fi
    dbg "kubo binary: $KUBO_BIN"
    return 0
}

# ipfsc DEADLINE_CS MAXSECS ARGS...: one bounded kubo CLI call.
ipfsc() {
    _i_dl=$1
    _i_max=$2
    shift 2
    bounded "$_i_dl" "$_i_max" "$KUBO_BIN" "$@"
}

# peering_json: PEERING = the Peering.Peers JSON for ipfs.peers (kubo dials these itself as it starts,
# keeps the connections protected and reconnects with backoff: good for seeding later, too).
peering_json() {
    PEERING=
    for _pj_ma in $PEERS; do
        _pj_id=${_pj_ma##*/}
        _pj_addr=${_pj_ma%/*}
        _pj_addr=${_pj_addr%/*}
        PEERING="${PEERING:+$PEERING, }{\"ID\": \"$_pj_id\", \"Addrs\": [\"$_pj_addr\"]}"
    done
    [ -z "$PEERING" ] || PEERING="[$PEERING]"
}

# kubo_prepare DEADLINE_CS: init a fresh RAM repo and configure it (no daemon yet; runs while DHCP
# is still waiting for a lease). Status 1 with KUBO_ERR.
kubo_prepare() {
    IPFS_PATH=$WORK/repo
    IPFS_TELEMETRY=off
    GOMEMLIMIT=$KUBO_GOMEMLIMIT
    export IPFS_PATH IPFS_TELEMETRY GOMEMLIMIT
    rm -rf "$IPFS_PATH"
    _k_log=$WORK/kubo-init.log
    printf '' >"$_k_log"
    if ! ipfsc "$1" 60 init --empty-repo --profile=test,lowpower >>"$_k_log" 2>&1; then
        last_line "$_k_log"
        KUBO_ERR="ipfs init failed: ${LAST:-no output}"
        return 1
    fi
    _k_routing=none
    [ "$SCHEME" = ipns ] && _k_routing=dhtclient
    if [ "$NET" = public ]; then # lib/public.sh: the DHT as a client (+ kubo's routers with its defaults)
        _k_routing=autoclient
        [ -n "$BOOTSTRAP" ] && _k_routing=dhtclient
    fi
    _k_mdns=true
    [ "$MDNS" = 0 ] && _k_mdns=false
    _k_swarm=/ip4/0.0.0.0/tcp/$PORT
    peering_json
    # Fast path: one awk pass over the JSON kubo just wrote, then check every key was found.
    rm -f "$WORK/kuboconf.done"
    _k_want="Addresses.Swarm Discovery.MDNS.Enabled Routing.Type${PEERING:+ Peering.Peers}"
    if awk -v swarm="$_k_swarm" -v routing="$_k_routing" -v mdns="$_k_mdns" -v peers="$PEERING" \
        -v report="$WORK/kuboconf.done" -f "$HOOK_LIB/kuboconf.awk" "$IPFS_PATH/config" \
        >"$IPFS_PATH/config.new" 2>>"$_k_log"; then
        _k_ok=1
        for _k_key in $_k_want; do
            grep -qxF "$_k_key" "$WORK/kuboconf.done" 2>/dev/null || _k_ok=0
        done
    else
        _k_ok=0
    fi
    if [ "$_k_ok" = 1 ]; then
        mv -f "$IPFS_PATH/config.new" "$IPFS_PATH/config"
        dbg "kubo config edited in place ($_k_want)"
    else
        # Slow path: the config did not look as expected; let kubo's CLI set each key.
        rm -f "$IPFS_PATH/config.new"
        dbg "kubo config: layout not recognised, using ipfs config"
        if ! ipfsc "$1" 30 config Routing.Type "$_k_routing" >>"$_k_log" 2>&1 ||
            ! ipfsc "$1" 30 config --json Addresses.Swarm "[\"$_k_swarm\"]" >>"$_k_log" 2>&1 ||
            ! ipfsc "$1" 30 config --json Discovery.MDNS.Enabled "$_k_mdns" >>"$_k_log" 2>&1 ||
            { [ -n "$PEERING" ] && ! ipfsc "$1" 30 config --json Peering.Peers "$PEERING" >>"$_k_log" 2>&1; }; then
            last_line "$_k_log"
            KUBO_ERR="ipfs config failed: ${LAST:-no output}"
            return 1
        fi
    fi
    kubo_net_config "$1" || return 1 # ipfs.net=public, ipfs.seed=0 (lib/public.sh)
    kubo_peer_id
    if [ -n "$SWARMKEY" ]; then
        # Private swarm: only peers with the same key can talk to us. FORCE_PNET makes kubo refuse
        # to start without the key; TCP_MUX=false silences the websocket-sharing warning.
        (umask 077 && printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$SWARMKEY" >"$IPFS_PATH/swarm.key")
        LIBP2P_FORCE_PNET=1
        LIBP2P_TCP_MUX=false
        export LIBP2P_FORCE_PNET LIBP2P_TCP_MUX
        dbg "private swarm: swarm.key written"
    fi
    return 0
}

# kubo_peer_id: KUBO_PEER_ID = Identity.PeerID from the repo's config (no CLI start: ~1 s under TCG).
kubo_peer_id() {
    KUBO_PEER_ID=$(awk '/^[ \t]*"Identity":/ { inid = 1 }
        inid && /^[ \t]*"PeerID":/ { v = $0; sub(/^[^:]*:[ \t]*"/, "", v); sub(/".*$/, "", v); print v; exit }' \
        "$IPFS_PATH/config" 2>/dev/null)
    case $KUBO_PEER_ID in
        '' | *[!A-Za-z0-9]*) KUBO_PEER_ID= ;;
    esac
}

# kubo_start DEADLINE_CS: start the daemon, wait until it is ready. Sets KUBO_PID GATEWAY API API_URL.
kubo_start() {
    tick
    KUBO_T0=$NOW
    "$KUBO_BIN" daemon >"$WORK/kubo.log" 2>&1 </dev/null &
    KUBO_PID=$!
    while :; do
        if grep -q 'Daemon is ready' "$WORK/kubo.log" 2>/dev/null && [ -s "$IPFS_PATH/gateway" ]; then
            break
        fi
        if ! kill -0 "$KUBO_PID" 2>/dev/null; then
            last_line "$WORK/kubo.log"
            KUBO_ERR="kubo daemon exited: ${LAST:-no output}"
            KUBO_PID=
            return 1
        fi
        secs_left "$1"
        if [ "$LEFT" -le 0 ]; then
            KUBO_ERR="kubo daemon not ready in time"
            kubo_stop
            return 1
        fi
        nap 0.1
    done
    tick
    KUBO_READY_CS=$((NOW - KUBO_T0))
    # kubo writes these files without a final newline
    GATEWAY=
    API=
    read -r GATEWAY <"$IPFS_PATH/gateway" || [ -n "$GATEWAY" ]
    read -r API <"$IPFS_PATH/api" 2>/dev/null || [ -n "$API" ]
    API_URL=
    case $API in
        /ip4/*/tcp/*)
            _k_host=${API#/ip4/}
            _k_host=${_k_host%%/*}
            API_URL="http://$_k_host:${API##*/tcp/}"
            ;;
    esac
    fmt_cs "$KUBO_READY_CS"
    dbg "kubo $KUBO_PID ready in $FMT s, gateway $GATEWAY, api $API"
    return 0
}

# api_connect DEADLINE_CS: one round of `swarm/connect` over kubo's RPC API for every peer, in
# parallel, with busybox wget (no Go CLI start: that costs a second under TCG). PEERS_OK = successes.
# Status 2 when this wget cannot POST (then the CLI is used instead).
api_connect() {
    PEERS_OK=0
    [ -n "$API_URL" ] || return 2
    _ac_i=0
    _ac_pids=
    for _ac_ma in $PEERS; do
        _ac_i=$((_ac_i + 1))
        (
            bounded "$1" 10 "$WGET" -q -O "$WORK/apic.$_ac_i.out" --post-data= \
                "$API_URL/api/v0/swarm/connect?arg=$_ac_ma" 2>"$WORK/apic.$_ac_i.err"
            echo "$?" >"$WORK/apic.$_ac_i.rc"
        ) &
        _ac_pids="$_ac_pids $!"
    done
    # shellcheck disable=SC2086
    wait $_ac_pids
    _ac_nopost=0
    _ac_i=0
    for _ac_ma in $PEERS; do
        _ac_i=$((_ac_i + 1))
        read -r _ac_rc <"$WORK/apic.$_ac_i.rc" 2>/dev/null || _ac_rc=1
        if [ "$_ac_rc" = 0 ] && grep -q success "$WORK/apic.$_ac_i.out" 2>/dev/null; then
            PEERS_OK=$((PEERS_OK + 1))
            dbg "peer connected: $_ac_ma"
        elif grep -qi 'unrecognized\|invalid option\|unknown option\|usage' "$WORK/apic.$_ac_i.err" 2>/dev/null; then
            _ac_nopost=1
        fi
    done
    [ "$PEERS_OK" = 0 ] && [ "$_ac_nopost" = 1 ] && return 2
    return 0
}

# kubo_wait_peers DEADLINE_CS: connect to ipfs.peers (kubo also keeps them as Peering.Peers, but its
# first own dial comes only after ~5 s of backoff). Rounds of API connects until one succeeds; when
# that runs out of time (or cannot be used), `ipfs swarm connect` dials once more to learn why -- its
# error text goes into the failure line.
kubo_wait_peers() {
    PEERS_OK=0
    [ -n "$PEERS" ] || return 0
    secs_left "$1"
    _w_poll_until=$(($1 - 500))
    [ "$LEFT" -gt 10 ] || _w_poll_until=$(($1 - LEFT * 50))
    while :; do
        api_connect "$_w_poll_until"
        case $? in
            0) [ "$PEERS_OK" -gt 0 ] && return 0 ;;
            2) dbg "kubo API not usable with this wget; dialling with the CLI"; break ;;
        esac
        tick
        [ "$NOW" -lt "$_w_poll_until" ] || break
        nap 0.5
    done
    kubo_dial "$1"
}

# kubo_dial DEADLINE_CS: `ipfs swarm connect` every peer in parallel; retry rounds until one answers.
# Sets PEERS_OK; on failure KUBO_ERR carries the first peer's error.
kubo_dial() {
    PEERS_OK=0
    _d_round=0
    while :; do
        _d_round=$((_d_round + 1))
        _d_i=0
        _d_pids=
        for _d_ma in $PEERS; do
            _d_i=$((_d_i + 1))
            (
                ipfsc "$1" 15 swarm connect "$_d_ma" >"$WORK/peer.$_d_i.out" 2>&1
                echo "$?" >"$WORK/peer.$_d_i.rc"
            ) &
            _d_pids="$_d_pids $!"
        done
        # shellcheck disable=SC2086
        wait $_d_pids
        _d_i=0
        _d_first=
        for _d_ma in $PEERS; do
            _d_i=$((_d_i + 1))
            read -r _d_rc <"$WORK/peer.$_d_i.rc" 2>/dev/null || _d_rc=1
            if [ "$_d_rc" = 0 ]; then
                PEERS_OK=$((PEERS_OK + 1))
                dbg "peer connected: $_d_ma"
            else
                last_line "$WORK/peer.$_d_i.out"
                case $_d_rc in 124 | 137 | 143) LAST="timed out" ;; esac
                [ -n "$_d_first" ] || _d_first="$_d_ma: ${LAST:-exit $_d_rc}"
                dbg "peer $_d_ma (round $_d_round): ${LAST:-exit $_d_rc}"
            fi
        done
        [ "$PEERS_OK" -gt 0 ] && return 0
        secs_left "$1"
        if [ "$LEFT" -le 1 ]; then
            KUBO_ERR="no peer reachable ($_d_i tried; first: $_d_first)"
            [ -n "$SWARMKEY" ] && KUBO_ERR="$KUBO_ERR; private swarm: does ipfs.swarmkey match the peers' key?"
            return 1
        fi
        nap 1
    done
}

# kubo_resolve DEADLINE_CS: ipns:NAME -> CID (and a path inside it, prepended to SUBPATH).
kubo_resolve() {
    if ! _r_out=$(ipfsc "$1" 60 name resolve "/ipns/$IPNS_NAME" 2>"$WORK/resolve.err"); then
        last_line "$WORK/resolve.err"
        KUBO_ERR="cannot resolve ipns:$IPNS_NAME: ${LAST:-timed out}"
        return 1
    fi
    _r_out=${_r_out%%[[:space:]]*}
    _r_rest=${_r_out#/ipfs/}
    _r_cid=${_r_rest%%/*}
    _r_sub=
    [ "$_r_cid" = "$_r_rest" ] || _r_sub=${_r_rest#*/}
    if [ "${_r_out#/ipfs/}" = "$_r_out" ] || ! is_cid "$_r_cid"; then
        short "$_r_out"
        KUBO_ERR="ipns:$IPNS_NAME resolved to '$SHORT', not /ipfs/<CID>"
        return 1
    fi
    if [ -n "$_r_sub" ] && ! is_safe_path "${_r_sub%/}"; then
        short "$_r_sub"
        KUBO_ERR="ipns:$IPNS_NAME resolved to an unsafe path '$SHORT'"
        return 1
    fi
    CID=$_r_cid
    _r_sub=${_r_sub%/}
    SUBPATH=${_r_sub}${_r_sub:+${SUBPATH:+/}}$SUBPATH
    dbg "ipns:$IPNS_NAME -> /ipfs/$CID${SUBPATH:+/$SUBPATH}"
    return 0
}

# pin_path DEADLINE_CS PATH [direct]: `pin/add` over kubo's RPC API (recursive, or with "direct" only
# the node itself). Counts into PINNED / PIN_FAILED; a failure is logged with its reason.
pin_path() {
    _pp_arg=$2
    case $_pp_arg in
        *+*) _pp_arg=$(printf '%s' "$_pp_arg" | sed 's/+/%2B/g') ;; # "+" in a query means a space
    esac
    _pp_q="arg=$_pp_arg"
    [ "${3:-}" = direct ] && _pp_q="$_pp_q&recursive=false"
    if bounded "$1" "$KUBO_PIN_MAX" "$WGET" -q -O "$WORK/pin.out" --post-data= \
        "$API_URL/api/v0/pin/add?$_pp_q" 2>"$WORK/pin.err" && grep -q '"Pins"' "$WORK/pin.out" 2>/dev/null; then
        PINNED=$((PINNED + 1))
    else
        last_line "$WORK/pin.err"
        PIN_FAILED=$((PIN_FAILED + 1))
        log "seeding: cannot pin $2: ${LAST:-no answer in time}"
    fi
}

# kubo_pin DEADLINE_CS: pin what the boot fetched through kubo so it survives any `ipfs repo gc`:
# the repo's directory node(s) /ipfs/<CID>[/sub...] (direct: only the node, never the whole repo),
# <lst>, and for every placed extension the NAME.tcz, NAME.tcz.md5.txt and NAME.tcz.dep that came
# through the gateway. All of it is local already: nothing new is fetched. Sets PINNED PIN_FAILED.
kubo_pin() {
    PINNED=0
    PIN_FAILED=0
    _kp_base=/ipfs/$CID
    pin_path "$1" "$_kp_base" direct
    _kp_rest=$SUBPATH
    while [ -n "$_kp_rest" ]; do
        _kp_base=$_kp_base/${_kp_rest%%/*}
        case $_kp_rest in
            */*) _kp_rest=${_kp_rest#*/} ;;
            *) _kp_rest= ;;
        esac
        pin_path "$1" "$_kp_base" direct
    done
    # shellcheck disable=SC2153 # LST is set by parse.sh
    [ -n "$LIST_CS" ] && pin_path "$1" "$_kp_base/$LST"
    awk -v placed=" $PLACED " 'index(placed, " " $1 " ") { print $2 }' "$PIN_NOTES" >"$WORK/pin.todo" 2>/dev/null
    while read -r _kp_rel; do
        pin_path "$1" "$_kp_base/$_kp_rel"
    done <"$WORK/pin.todo"
}

# seed_pins_bg: after the hand-over, in the background (the boot goes on): kubo_pin, bounded by
# ipfs.timeout, then the status file is written again with pinned= (and pin_failed=). Output goes to
# the hook log only. Nothing is written if kubo is gone or the status is no longer this run's.
seed_pins_bg() {
    (
        tick
        _sp_t0=$NOW
        kubo_pin "$((NOW + TIMEOUT * 100))"
        tick
        fmt_cs "$((NOW - _sp_t0))"
        _sp_msg="seeding: pinned $PINNED path(s) in $FMT s"
        [ "$PIN_FAILED" -gt 0 ] && _sp_msg="$_sp_msg, $PIN_FAILED failed"
        log "$_sp_msg"
        if kill -0 "$KUBO_PID" 2>/dev/null && grep -qxF "kubo_pid=$KUBO_PID" "$STATUS" 2>/dev/null; then
            write_status
        fi
        [ "$DEBUG" = 1 ] || rm -f "$PIN_NOTES" "$WORK/pin.todo" "$WORK/pin.out" "$WORK/pin.err"
    ) </dev/null >/dev/null 2>&1 &
}

# kubo_stop: SIGTERM (kubo shuts down cleanly on it), wait up to 3 s, then SIGKILL.
kubo_stop() {
    [ -n "$KUBO_PID" ] || return 0
    kill "$KUBO_PID" 2>/dev/null
    _s_i=0
    while kill -0 "$KUBO_PID" 2>/dev/null && [ "$_s_i" -lt 30 ]; do
        nap 0.1
        _s_i=$((_s_i + 1))
    done
    kill -9 "$KUBO_PID" 2>/dev/null
    KUBO_PID=
}
