# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# kubo.sh -- run kubo from /tmp/builtin/optional/ipfs.tcz with a RAM repo, dial peers, resolve IPNS.
#
# The hook mounts ipfs.tcz itself, exactly where and how tce-load would (loop, ro, /tmp/tcloop/ipfs):
# tce-load later finds it in /etc/mtab, skips the mount and only links it into / -- so kubo runs
# before tce-setup's list step and ends up a normal loaded extension (listed first in <lst>).
#
# Node configuration: profiles test,lowpower + five keys, made in the daemon's own start
# (`ipfs daemon --init --init-config` with the keys only; kubo_init_repo: `ipfs init` + lib/configset.awk
# for a kubo without that):
#   test      API and gateway on 127.0.0.1 (port 0 = any free one; kubo writes repo/api and
#             repo/gateway), no bootstrap peers, AutoConf off, mDNS off, no NAT port mapping, AutoTLS off
#   lowpower  no DHT/AutoNAT/relay services; connection manager 20..40 connections
#   Routing.Type none   (dhtclient for ipns:, so the name can be asked of the dialled peers)
#   Addresses.Swarm     /ip4/0.0.0.0/tcp/<ipfs.port>: LAN peers can fetch from us afterwards
#   Discovery.MDNS      on unless ipfs.mdns=0: machines booting on one LAN find each other (also
#                       next to ipfs.peers=, which only names the seed) and trade blocks; multicast
#                       stays on the machine's own link. In a private swarm only same-key peers connect.
#   Peering.Peers       ipfs.peers: kubo dials them as it starts and keeps/reconnects those links
# ipfs.net=public (and ipfs.seed=0 there) changes more keys: lib/public.sh (net_keys), in the same start.
# Environment: IPFS_TELEMETRY=off; GOGC=off with GOMEMLIMIT = a fifth of the RAM (40..100 MiB):
# the Go GC then runs only when the heap nears that cap instead of every time it doubles. A fresh
# heap collected again and again while the packages initialise is most of a CLI start on a slow CPU,
# and the fetch allocates a buffer per block; measured in the boot benchmark (QEMU CPU time per boot):
# GOGC=off for the CLI runs halves `ipfs init`, and for the daemon it saves ~6% of the boot's CPU.

IPFS_TCZ=$OPT/ipfs.tcz
KUBO_MNT=$ROOT/tmp/tcloop/ipfs
KUBO_GOMEMLIMIT=100MiB # soft Go heap cap (see README and kubo_limits)
KUBO_GOGC=off          # Go GC pacing (kubo_limits): off = collect only near GOMEMLIMIT
KUBO_BITSWAP=          # extra config keys: the bitswap server's workers (kubo_limits)
KUBO_CONN_LOW=20       # Swarm.ConnMgr watermarks (kubo_limits)
KUBO_CONN_HIGH=40
KUBO_RCMGR=            # Swarm.ResourceMgr JSON (kubo_limits; empty: kubo's defaults)
KUBO_FILESTORE=false   # Experimental.FilestoreEnabled (lib/onecopy.sh)
MEM_MIB=
KUBO_GW_TIMEOUT=120s  # Gateway.RetrievalTimeout (kubo_prepare)
# kubo's filestore takes files only under the directory holding the repo: with the filestore on,
# kubo sees its repo through this link in /tmp, so /tmp/builtin/optional/ is under it.
KUBO_REPO_LINK=$ROOT/tmp/.tce-ipfs-repo
KUBO_BIN=
KUBO_MDNS=false # LAN discovery on (kubo_prepare): other booting machines may turn up to trade with
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
KUBO_ROUTING=none
KUBO_SWARM=
# Noise only, no TLS: the connection stays encrypted and authenticated (and every block is still
# checked against its CID), but the handshake and the data cost less CPU than TLS 1.3 (libp2p's TLS
# makes a fresh certificate per connection; Noise moves data in larger frames). Measured in the boot
# benchmark: about a tenth of the boot's QEMU CPU time. Every kubo speaks Noise.
KUBO_SECURITY='{"TLS": false}'
KUBO_PIN_MAX=30   # seconds for one pin/add call (the blocks are local: it normally takes milliseconds)
KUBO_PIN_BATCH=40 # paths per pin/add call (keeps the URL well under any length limit)
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
    mark kubo_mount
    return 0
}

# kubo_limits: kubo's memory and connection limits from the machine's RAM (MemTotal, MiB = M):
#   GOMEMLIMIT                 M/5, 40..100 MiB (kubo's live heap while it fetches and seeds is ~25 MiB:
#                              the cap must stay well above it, or the GC would run all the time; a
#                              256 MiB guest holding a 96 MiB onboot set stalled with a quarter);
#                              below 512 MiB M/6, at least 32 MiB: after a 96 MiB onboot set a 256 MiB
#                              x86_64 guest has ~20 MiB left, and a daemon regrowing to M/5 while it
#                              served a peer pushed its own code out of RAM
#   Swarm.ConnMgr.HighWater    M/8, 8..40 (LowWater half of it): each connection costs buffers
#   Swarm.ResourceMgr.MaxMemory M/8, 16..128 MiB (kubo's default is M/2; libp2p's limits scale with it)
#   below 512 MiB: one .tcz fetch at a time (FETCH_JOBS=1), and GOGC=50 instead of off: with GOGC=off
#                              the heap always grows to the cap before a collection, and on a 256 MiB
#                              machine holding a 96 MiB onboot set those 40 MiB are the RAM the
#                              seeding job needs (it thrashed); with 50 the heap stays near 1.5 x the
#                              live heap and the cap only bounds the peaks; and the bitswap server's
#                              block readers 128 -> 16, its task workers 8 -> 4 (blocks read and
#                              held for peers at once)
# Without a readable /proc/meminfo: 100 MiB, 20..40 (the lowpower profile), kubo's own MaxMemory.
kubo_limits() {
    MEM_MIB=
    _km_kb=$(awk '/^MemTotal:/ { print $2; exit }' "$ROOT/proc/meminfo" 2>/dev/null)
    case $_km_kb in
        '' | *[!0-9]*) return 0 ;;
    esac
    MEM_MIB=$((_km_kb / 1024))
    if [ "$MEM_MIB" -lt 512 ]; then
        _km_mib=$((MEM_MIB / 6))
        [ "$_km_mib" -lt 32 ] && _km_mib=32
    else
        _km_mib=$((MEM_MIB / 5))
        [ "$_km_mib" -gt 100 ] && _km_mib=100
    fi
    KUBO_GOMEMLIMIT=${_km_mib}MiB
    KUBO_CONN_HIGH=$((MEM_MIB / 8))
    [ "$KUBO_CONN_HIGH" -lt 8 ] && KUBO_CONN_HIGH=8
    [ "$KUBO_CONN_HIGH" -gt 40 ] && KUBO_CONN_HIGH=40
    KUBO_CONN_LOW=$((KUBO_CONN_HIGH / 2))
    _km_rc=$((MEM_MIB / 8))
    [ "$_km_rc" -lt 16 ] && _km_rc=16
    [ "$_km_rc" -gt 128 ] && _km_rc=128
    KUBO_RCMGR="{\"MaxMemory\": \"${_km_rc}MiB\"}"
    # Below 512 MiB one .tcz at a time: each file in flight sits in RAM twice until it is placed and
    # switched to its file (lib/onecopy.sh).
    if [ "$MEM_MIB" -lt 512 ]; then
        FETCH_JOBS=1
        KUBO_GOGC=50
        KUBO_BITSWAP=', "Internal": {"Bitswap": {"EngineBlockstoreWorkerCount": 16, "EngineTaskWorkerCount": 4}}'
    fi
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

# kubo_prepare DEADLINE_CS: decide the node's settings and write them down (no kubo start yet; runs
# while DHCP is still waiting for a lease). The repo itself is made by the daemon's own start
# (kubo_start: `ipfs daemon --init --init-config`, one kubo start instead of two); kubo_init_repo is
# the two-start way for a kubo without that. Status 1 with KUBO_ERR.
kubo_prepare() {
    IPFS_PATH=$WORK/repo
    IPFS_TELEMETRY=off
    kubo_limits
    GOMEMLIMIT=$KUBO_GOMEMLIMIT
    GOGC=$KUBO_GOGC
    rm -rf "$IPFS_PATH" "$KUBO_REPO_LINK"
    KUBO_FILESTORE=false
    ONECOPY_ON=0
    if [ "$ONECOPY" = 1 ] && [ "$SEED" = 1 ]; then
        mkdir -p "$IPFS_PATH"
        if ln -s tce-ipfs/repo "$KUBO_REPO_LINK" 2>/dev/null; then
            IPFS_PATH=$KUBO_REPO_LINK
            KUBO_FILESTORE=true
            ONECOPY_ON=1
        else
            dbg "onecopy: cannot make $KUBO_REPO_LINK; kubo keeps its own copies"
        fi
    fi
    export IPFS_PATH IPFS_TELEMETRY GOMEMLIMIT GOGC
    KUBO_ROUTING=none
    [ "$SCHEME" = ipns ] && KUBO_ROUTING=dhtclient
    if [ "$NET" = public ]; then # lib/public.sh: the DHT as a client (+ kubo's routers with its defaults)
        KUBO_ROUTING=autoclient
        [ -n "$BOOTSTRAP" ] && KUBO_ROUTING=dhtclient
    fi
    KUBO_MDNS=true
    [ "$MDNS" = 0 ] && KUBO_MDNS=false
    KUBO_SWARM=/ip4/0.0.0.0/tcp/$PORT
    peering_json
    # The keys kubo_start's daemon puts on top of `--profile=test,lowpower`. kubo takes a config
    # --init-config FILE with no identity as "only these keys" (a tce-ipfs change to kubo, see
    # tcz-build/ipfs/kubo-slim/kubo/bootinit.go); an unchanged kubo refuses it and kubo_start falls
    # back to kubo_init_repo.
    _k_peering=
    [ -n "$PEERING" ] && _k_peering=", \"Peering\": {\"Peers\": $PEERING}"
    kubo_net_json # public mode's keys (lib/public.sh)
    _k_rcmgr=${NETJ_RCMGR:-$KUBO_RCMGR}
    [ -n "$_k_rcmgr" ] && _k_rcmgr=", \"ResourceMgr\": $_k_rcmgr"
    # Gateway.RetrievalTimeout: kubo cuts a gateway response off when no byte came for 30 s (its
    # default); on a slow machine short of RAM a stall that long happens, and one cut file would mark
    # the whole IPFS source down. Our own bounds (ipfs.timeout) still apply.
    printf '{"Addresses": {"Swarm": ["%s"]}, "Routing": {"Type": "%s"%s}, "Discovery": {"MDNS": {"Enabled": %s}}, "Swarm": {"Transports": {"Security": %s}, "ConnMgr": {"LowWater": %s, "HighWater": %s}%s%s}, "Experimental": {"FilestoreEnabled": %s}, "Gateway": {"RetrievalTimeout": "%s"}%s%s%s}\n' \
        "$KUBO_SWARM" "$KUBO_ROUTING" "$NETJ_ROUTING" "$KUBO_MDNS" "$KUBO_SECURITY" "$KUBO_CONN_LOW" \
        "$KUBO_CONN_HIGH" "$_k_rcmgr" "$NETJ_SWARM" "$KUBO_FILESTORE" "$KUBO_GW_TIMEOUT" "$_k_peering" \
        "$KUBO_BITSWAP" "$NETJ_TOP" >"$WORK/kubo-init.json"
    dbg "kubo limits: RAM ${MEM_MIB:-?} MiB, GOMEMLIMIT $KUBO_GOMEMLIMIT, GOGC $KUBO_GOGC, connections $KUBO_CONN_LOW..$KUBO_CONN_HIGH, resource manager ${KUBO_RCMGR:-default}"
    mkdir -p "$IPFS_PATH"
    if [ "$NET" != public ]; then
        # Outgoing TCP from an ephemeral port, not from the listening one. mDNS makes two machines
        # that answer the same query dial each other at the same moment; with the listening port
        # reused on both ends the two SYNs make ONE TCP connection (simultaneous open) in which both
        # are the dialer, the handshake fails, and that pair stays apart (go-libp2p issue 2925).
        # Port reuse is needed only for hole punching (public mode, lib/public.sh).
        LIBP2P_TCP_REUSEPORT=false
        export LIBP2P_TCP_REUSEPORT
    fi
    if [ -n "$SWARMKEY" ]; then
        # Private swarm: only peers with the same key can talk to us. FORCE_PNET makes kubo refuse
        # to start without the key; TCP_MUX=false silences the websocket-sharing warning.
        (umask 077 && printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$SWARMKEY" >"$IPFS_PATH/swarm.key")
        LIBP2P_FORCE_PNET=1
        LIBP2P_TCP_MUX=false
        export LIBP2P_FORCE_PNET LIBP2P_TCP_MUX
        dbg "private swarm: swarm.key written"
    fi
    mark kubo_init
    return 0
}

# kubo_init_repo DEADLINE_CS: the two-start way: `ipfs init --empty-repo --profile=test,lowpower`,
# then the keys of kubo_prepare (and public mode's, lib/public.sh) set in the config file by
# kubo_config_set. Status 1 with KUBO_ERR.
kubo_init_repo() {
    printf '' >"$WORK/kubo-init.log"
    if ! ipfsc "$1" 60 init --empty-repo --profile=test,lowpower >>"$WORK/kubo-init.log" 2>&1; then
        last_line "$WORK/kubo-init.log"
        KUBO_ERR="ipfs init failed: ${LAST:-no output}"
        return 1
    fi
    {
        printf '%s\t%s\n' \
            Routing.Type "\"$KUBO_ROUTING\"" \
            Addresses.Swarm "[\"$KUBO_SWARM\"]" \
            Discovery.MDNS.Enabled "$KUBO_MDNS" \
            Swarm.Transports.Security "$KUBO_SECURITY" \
            Swarm.ConnMgr.LowWater "$KUBO_CONN_LOW" \
            Swarm.ConnMgr.HighWater "$KUBO_CONN_HIGH" \
            Experimental.FilestoreEnabled "$KUBO_FILESTORE"
        [ -z "$KUBO_RCMGR" ] || printf '%s\t%s\n' Swarm.ResourceMgr "$KUBO_RCMGR"
        [ -z "$PEERING" ] || printf '%s\t%s\n' Peering.Peers "$PEERING"
        net_keys # public mode's (lib/public.sh); its Swarm.ResourceMgr, later, wins
    } >"$WORK/kubo-config.sets"
    kubo_config_set "$1" "$WORK/kubo-config.sets"
}

# kubo_config_set DEADLINE_CS SETS: the "KEY<TAB>JSON" lines of the file SETS set in the config kubo
# wrote, in one awk pass (lib/configset.awk); a key the pass did not find (a layout it does not
# know) is set with `ipfs config --json`, one kubo start each. Status 1 with KUBO_ERR.
kubo_config_set() {
    rm -f "$WORK/configset.done"
    if awk -v sets="$2" -v report="$WORK/configset.done" -f "$HOOK_LIB/configset.awk" \
        "$IPFS_PATH/config" >"$IPFS_PATH/config.new" 2>>"$WORK/kubo-init.log"; then
        mv -f "$IPFS_PATH/config.new" "$IPFS_PATH/config"
    else
        rm -f "$IPFS_PATH/config.new" "$WORK/configset.done"
    fi
    _kc_n=0
    while IFS="$(printf '\t')" read -r _kc_key _kc_json; do
        grep -qxF "$_kc_key" "$WORK/configset.done" 2>/dev/null && continue
        _kc_n=$((_kc_n + 1))
        if ! ipfsc "$1" 30 config --json "$_kc_key" "$_kc_json" >>"$WORK/kubo-init.log" 2>&1; then
            last_line "$WORK/kubo-init.log"
            KUBO_ERR="ipfs config $_kc_key failed: ${LAST:-no output}"
            return 1
        fi
    done <"$2"
    if [ "$_kc_n" = 0 ]; then
        dbg "kubo config edited in place"
    else
        dbg "kubo config: $_kc_n key(s) not where expected, set with ipfs config"
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

# kubo_daemon ARGS...: start `ipfs daemon ARGS` in the background (KUBO_PID), output to kubo.log.
kubo_daemon() {
    "$KUBO_BIN" daemon "$@" >"$WORK/kubo.log" 2>&1 </dev/null &
    KUBO_PID=$!
}

# kubo_start DEADLINE_CS: start the daemon -- which makes the repo in the same start (see
# kubo_prepare) -- and wait until it is ready. A kubo that refuses the settings-only --init-config
# gets its repo from kubo_init_repo and a second start. Sets KUBO_PID GATEWAY API API_URL KUBO_PEER_ID.
kubo_start() {
    tick
    KUBO_T0=$NOW
    # One start in every mode: public mode's keys (lib/public.sh) are in kubo-init.json too.
    kubo_daemon --init --init-profile=test,lowpower --init-config="$WORK/kubo-init.json"
    _ks_onestart=1
    while :; do
        if grep -q 'Daemon is ready' "$WORK/kubo.log" 2>/dev/null && [ -s "$IPFS_PATH/gateway" ]; then
            break
        fi
        if ! kill -0 "$KUBO_PID" 2>/dev/null; then
            last_line "$WORK/kubo.log"
            KUBO_PID=
            if [ "$_ks_onestart" = 1 ] && [ ! -e "$IPFS_PATH/config" ]; then
                # no repo made: this kubo does not take a settings-only --init-config
                _ks_onestart=0
                dbg "kubo daemon --init: ${LAST:-no output}; making the repo with ipfs init"
                mv -f "$WORK/kubo.log" "$WORK/kubo-onestart.log"
                kubo_init_repo "$1" || return 1
                kubo_daemon
                continue
            fi
            KUBO_ERR="kubo daemon exited: ${LAST:-no output}"
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
    kubo_peer_id
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
    mark kubo_ready
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
    list_prefetch
    [ -n "$PEERS" ] || return 0
    secs_left "$1"
    _w_poll_until=$(($1 - 500))
    [ "$LEFT" -gt 10 ] || _w_poll_until=$(($1 - LEFT * 50))
    while :; do
        api_connect "$_w_poll_until"
        case $? in
            0) [ "$PEERS_OK" -gt 0 ] && { mark peers; return 0; } ;;
            2) dbg "kubo API not usable with this wget; dialling with the CLI"; break ;;
        esac
        tick
        [ "$NOW" -lt "$_w_poll_until" ] || break
        nap 0.5
    done
    kubo_dial "$1" && mark peers
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
    # Right after the dial the peer may not be in kubo's DHT routing table yet (identify runs after
    # the connection): the resolve then fails at once. A few tries, a second apart, cover that.
    _r_try=1
    while ! _r_out=$(ipfsc "$1" 60 name resolve "/ipns/$IPNS_NAME" 2>"$WORK/resolve.err"); do
        secs_left "$1"
        if [ "$_r_try" -ge 5 ] || [ "$LEFT" -le 2 ]; then
            last_line "$WORK/resolve.err"
            KUBO_ERR="cannot resolve ipns:$IPNS_NAME: ${LAST:-timed out}"
            return 1
        fi
        _r_try=$((_r_try + 1))
        nap 1
    done
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
    mark ipns
    return 0
}

# pin_call DEADLINE_CS MODE PATH...: one `pin/add` over kubo's RPC API for all PATHs (MODE recursive,
# or direct: only the nodes themselves). Status 0 when kubo pinned them all; LAST = why not.
pin_call() {
    _pc_dl=$1
    _pc_mode=$2
    _pc_q=
    shift 2
    for _pc_p in "$@"; do
        case $_pc_p in
            *+*) _pc_p=$(printf '%s' "$_pc_p" | sed 's/+/%2B/g') ;; # "+" in a query means a space
        esac
        _pc_q="${_pc_q:+$_pc_q&}arg=$_pc_p"
    done
    [ "$_pc_mode" = direct ] && _pc_q="$_pc_q&recursive=false"
    LAST=
    bounded "$_pc_dl" "$KUBO_PIN_MAX" "$WGET" -q -O "$WORK/pin.out" --post-data= \
        "$API_URL/api/v0/pin/add?$_pc_q" 2>"$WORK/pin.err" && grep -q '"Pins"' "$WORK/pin.out" 2>/dev/null &&
        return 0
    last_line "$WORK/pin.err"
    return 1
}

# pin_batch DEADLINE_CS MODE PATH...: pin the PATHs in one call; if it fails, one path at a time, so
# every path that cannot be pinned is counted and logged with its reason. Counts into PINNED/PIN_FAILED.
pin_batch() {
    _pb_dl=$1
    _pb_mode=$2
    shift 2
    [ "$#" -gt 0 ] || return 0
    if pin_call "$_pb_dl" "$_pb_mode" "$@"; then
        PINNED=$((PINNED + $#))
        return 0
    fi
    if [ "$#" -eq 1 ]; then
        PIN_FAILED=$((PIN_FAILED + 1))
        log "seeding: cannot pin $1: ${LAST:-no answer in time}"
        return 0
    fi
    for _pb_p in "$@"; do
        if pin_call "$_pb_dl" "$_pb_mode" "$_pb_p"; then
            PINNED=$((PINNED + 1))
        else
            PIN_FAILED=$((PIN_FAILED + 1))
            log "seeding: cannot pin $_pb_p: ${LAST:-no answer in time}"
        fi
    done
}

# pin_list DEADLINE_CS MODE FILE: pin the paths in FILE (one per line) in batches of KUBO_PIN_BATCH.
pin_list() {
    in_batches "$KUBO_PIN_BATCH" "$3" pin_batch "$1" "$2"
}

# kubo_pin DEADLINE_CS: pin what the boot fetched through kubo so it survives any `ipfs repo gc`:
# the repo's directory node(s) /ipfs/<CID>[/sub...] (direct: only the node, never the whole repo),
# <lst>, and for every placed extension the NAME.tcz, NAME.tcz.md5.txt and NAME.tcz.dep that came
# through the gateway. All of it is local already: nothing new is fetched. Two API calls (direct,
# recursive) for a closure of up to KUBO_PIN_BATCH files. Sets PINNED PIN_FAILED.
kubo_pin() {
    PINNED=0
    PIN_FAILED=0
    _kp_base=/ipfs/$CID
    printf '%s\n' "$_kp_base" >"$WORK/pin.dirs"
    _kp_rest=$SUBPATH
    while [ -n "$_kp_rest" ]; do
        _kp_base=$_kp_base/${_kp_rest%%/*}
        case $_kp_rest in
            */*) _kp_rest=${_kp_rest#*/} ;;
            *) _kp_rest= ;;
        esac
        printf '%s\n' "$_kp_base" >>"$WORK/pin.dirs"
    done
    pin_list "$1" direct "$WORK/pin.dirs"
    {
        # shellcheck disable=SC2153 # LST is set by parse.sh
        [ -n "$LIST_CS" ] && printf '%s\n' "$_kp_base/$LST"
        # not the files onecopy had no RAM left to switch (lib/onecopy.sh): a pin would fetch them again
        awk -v base="$_kp_base" -v placed=" $PLACED " -v skip=" $ONECOPY_SKIPPED " \
            'index(placed, " " $1 " ") && !index(skip, " " $2 " ") { print base "/" $2 }' "$PIN_NOTES" 2>/dev/null
    } >"$WORK/pin.todo"
    pin_list "$1" recursive "$WORK/pin.todo"
}

# loader_busy PID: status 0 while PID is TC's tce-setup (the hook's parent at boot; host tests run the
# hook from something else, so nothing waits there).
loader_busy() {
    grep -q tce-setup "$ROOT/proc/$1/cmdline" 2>/dev/null
}

# seed_pins_bg: after the hand-over, in the background (the boot goes on): once tce-setup has finished
# (at most ipfs.timeout) and, in public mode, once peers can be told how to reach us
# (seed_announce_wait: a pin is announced at once), kubo_pin, bounded by ipfs.timeout; then the status file is written again with
# pinned= (and pin_failed=). Output goes to the hook log only. Nothing is written if kubo is gone or the
# status is no longer this run's.
seed_pins_bg() {
    (
        # Not before tce-setup is done: it loads the list and runs the install scripts once we
        # return, and the boot waits for it; the pins are for later peers and can wait for the CPU.
        tick
        _sp_dl=$((NOW + TIMEOUT * 100))
        while loader_busy "$PPID" && [ "$NOW" -lt "$_sp_dl" ]; do
            nap 0.5
            tick
        done
        seed_announce_wait "$((NOW + TIMEOUT * 100))"
        tick
        _sp_t0=$NOW
        # the extensions that were not switched during the fetch (RAM was not tight): now, in one go
        onecopy_deferred "$((NOW + TIMEOUT * 100))"
        kubo_pin "$((NOW + TIMEOUT * 100))"
        tick
        fmt_cs "$((NOW - _sp_t0))"
        _sp_msg="seeding: pinned $PINNED path(s) in $FMT s"
        [ "$PIN_FAILED" -gt 0 ] && _sp_msg="$_sp_msg, $PIN_FAILED failed"
        log "$_sp_msg"
        if kill -0 "$KUBO_PID" 2>/dev/null && grep -qxF "kubo_pid=$KUBO_PID" "$STATUS" 2>/dev/null; then
            write_status
        fi
        [ "$DEBUG" = 1 ] || rm -f "$PIN_NOTES" "$WORK/pin.todo" "$WORK/pin.dirs" "$WORK/pin.out" "$WORK/pin.err" \
            "$WORK"/announce-*
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

# kubo_free: (ipfs.seed=0, or nothing to seed) after kubo_stop: remove the RAM repo too, so nothing of
# kubo stays in RAM but the loaded ipfs.tcz (`ipfs daemon` can still be started by hand: it makes a
# new repo). Kept with ipfs.debug.
kubo_free() {
    [ "$DEBUG" = 1 ] && return 0
    rm -rf "$WORK/repo" "$KUBO_REPO_LINK" "$WORK/oc" "$WORK/onecopy.todo" 2>/dev/null
    IPFS_PATH=
}
