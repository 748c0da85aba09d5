# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# gateway.sh -- ipfs.gateway=http://host:port: a seed's trustless HTTP gateway (kubo's gateway with
# Gateway.DeserializedResponses=false and Gateway.NoFetch=true: it answers only `?format=car` and raw
# blocks, and only from what the seed holds). Moving a file as one CAR over HTTP costs a slow CPU far
# less than bitswap's per-block messages over libp2p (measured in the boot benchmark).
#
# Trust is unchanged: the CAR is only a carrier of blocks. Before <lst> or a .tcz is read through the
# local kubo's gateway as always (fetch.sh), its CAR -- `/ipfs/<CID>[/sub]/<REL>?format=car`, the blocks of
# the path from the root plus the file's whole DAG -- is fetched with wget and handed to kubo's
# `dag/import`, which checks every block against its CID (a block whose bytes do not hash to its
# CID fails the import; nothing of that CAR is kept). The read then finds the blocks local; whatever
# the CAR did not hold is fetched over bitswap as before; the md5 check follows as always. A 404 or an
# empty answer from the gateway is never believed: the read through kubo decides.
#
# The import goes to kubo's RPC API as a raw HTTP request through busybox `nc -e`: busybox wget's
# --post-file stops at the first NUL byte (it sends a file as a string), and the kubo CLI would cost
# a Go start (about a second of CPU under QEMU TCG) per call.
#
# Fallback: the first failure (the gateway unreachable, a refused block, an import error) marks the
# gateway down for the rest of the boot ($WORK/down.G, seen by every fetch job), one warning line says
# why, and every file goes over bitswap from then on (then ipfs.mirror=, as always).
#
# In a lab booting at once the machines should trade blocks instead of each taking the whole set from
# the seed: when there may be someone to trade with (fetch.sh's may_trade), .tcz files go over bitswap
# and only the list comes through the gateway. The small sidecars (.dep, .md5.txt) always go over
# bitswap (gw_wanted).

GW_URL=            # ipfs.gateway= (parse.sh), without a trailing /
GW_DIR=$WORK/gw    # the CARs in flight; NAME.ok (bytes imported) for each one imported
GW_BOUNDARY=tce-ipfs-car-3b9f0d5e7a1c
GW_MAX=120         # seconds for one CAR's import (blocks are written to the RAM repo)
GW_USED=0          # the list came through the gateway (gw_first): peers were not waited for
GW_PRE=            # pid of gw_prefetch_list's background download

# gw_down WHY: mark the gateway down for every job; the first process to do so says why, once.
gw_down() {
    mkdir "$WORK/down.G" 2>/dev/null || return 0
    log "gateway: $1"
    warn "ipfs.gateway=$GW_URL: $1; fetching over bitswap"
}

# gw_prepare: the multipart head and tail around every CAR (written once; jobs inherit the sizes).
# Every process costs under QEMU TCG (a fork and exec of busybox: ~10 ms): the per-file path below
# keeps to about ten of them.
GW_HEAD_LEN=
GW_TAIL_LEN=
gw_prepare() {
    [ -n "$GW_HEAD_LEN" ] && return 0
    mkdir -p "$GW_DIR"
    _gp_head='Content-Disposition: form-data; name="file"; filename="x.car"'
    printf -- '--%s\r\n%s\r\nContent-Type: application/vnd.ipld.car\r\n\r\n' "$GW_BOUNDARY" "$_gp_head" \
        >"$GW_DIR/.head"
    printf -- '\r\n--%s--\r\n' "$GW_BOUNDARY" >"$GW_DIR/.tail"
    # (plain ASCII: ${#} counts bytes. Head: "--", three CRLFs and a blank line's CRLF = 10, and the
    # 38 characters of "Content-Type: application/vnd.ipld.car"; tail: CRLF "--" "--" CRLF = 8)
    GW_HEAD_LEN=$((${#GW_BOUNDARY} + ${#_gp_head} + 38 + 10))
    GW_TAIL_LEN=$((${#GW_BOUNDARY} + 8))
}

# gw_import CARFILE SIZE DEADLINE_CS: POST the CAR to kubo's dag/import (multipart, one file) with nc.
# Status 0 when kubo answered 200 (every block checked against its CID and stored); 1 with GW_ERR.
gw_import() {
    GW_ERR=
    _gi_hp=${API_URL#http://}
    printf 'POST /api/v0/dag/import?pin-roots=false&stats=false HTTP/1.0\r\nHost: %s\r\nContent-Type: multipart/form-data; boundary=%s\r\nContent-Length: %s\r\n\r\n' \
        "$_gi_hp" "$GW_BOUNDARY" "$((GW_HEAD_LEN + $2 + GW_TAIL_LEN))" >"$1.req"
    # nc -e: the connection becomes the child's stdin/stdout; it sends the request, then reads the
    # answer until kubo closes. (nc's own copy loop half-closes the socket at the end of the upload,
    # which Go's HTTP server takes for a client gone away: it cancels the import.)
    # shellcheck disable=SC2016 # $1..$5 are the child shell's
    bounded "$3" "$GW_MAX" "$NC" "${_gi_hp%:*}" "${_gi_hp##*:}" -e sh -c 'cat "$1" "$2" "$3" "$4" && cat >"$5"' \
        sh "$1.req" "$GW_DIR/.head" "$1" "$GW_DIR/.tail" "$1.resp" 2>"$1.err"
    _gi_status=
    read -r _gi_proto _gi_status _gi_rest <"$1.resp" 2>/dev/null
    [ "$_gi_status" = 200 ] && return 0
    # kubo's error is JSON: {"Message":"...","Code":0,"Type":"error"}
    GW_ERR=$(sed -n 's/.*"Message":"\(.*\)","Code".*/\1/p' "$1.resp" 2>/dev/null | head -n 1 | tr -d '\134' |
        sed 's/"//g; s/ after block [^:]*:/:/' | cut -c1-200)
    if [ -z "$GW_ERR" ]; then
        last_line "$1.err"
        GW_ERR=${LAST:-no answer from the kubo API${_gi_status:+ (HTTP $_gi_status)}}
    fi
    return 1
}

# gw_car REL DEADLINE_CS: REL's CAR from the gateway, imported into kubo. Status 0 when imported (or
# already), 1 when the gateway is not used, down, or failed now (then it is marked down).
gw_car() {
    [ -n "$GW_URL" ] && [ -n "$API_URL" ] && [ -n "$CID" ] || return 1
    [ -d "$WORK/down.G" ] && return 1
    _gc_f=$GW_DIR/$1
    [ -f "$_gc_f.ok" ] && return 0
    gw_prepare
    if [ -n "$GW_PRE" ] && [ "$1" = "$LST" ]; then
        # downloaded while kubo started (gw_prefetch_list)
        wait "$GW_PRE" 2>/dev/null
        GW_PRE=
        _gc_rc=1
        FETCH_ERR=
        { read -r _gc_rc; read -r FETCH_ERR; } <"$_gc_f.pre" 2>/dev/null
        [ -n "$FETCH_ERR" ] || [ "$_gc_rc" = 0 ] || FETCH_ERR="no answer"
    else
        _gc_err=$JOB_ERR
        JOB_ERR=$_gc_f.wget
        fetch_url "$GW_URL/ipfs/$CID${SUBPATH:+/$SUBPATH}/$1?format=car" "$_gc_f.car" "$2"
        _gc_rc=$?
        JOB_ERR=$_gc_err
    fi
    case $_gc_rc in
        0) ;;
        2) return 1 ;; # not believed either way: the read through kubo decides
        *) gw_down "$1: $FETCH_ERR"; return 1 ;;
    esac
    _gc_size=$(stat -c %s "$_gc_f.car" 2>/dev/null)
    case $_gc_size in '' | *[!0-9]*) _gc_size=0 ;; esac
    if gw_import "$_gc_f.car" "$_gc_size" "$2"; then
        printf '%s\n' "$_gc_size" >"$_gc_f.ok"
        _gc_rc=0
    else
        gw_down "$1: refused by kubo's import: $GW_ERR"
        _gc_rc=1
    fi
    rm -f "$_gc_f.car" "$_gc_f.car.req" "$_gc_f.car.resp" "$_gc_f.car.err" "$_gc_f.wget" "$_gc_f.pre"
    return "$_gc_rc"
}

# gw_prefetch_list DEADLINE_CS: (main shell, network up, before kubo starts) download <lst>'s CAR in
# the background while kubo starts -- nothing is trusted before kubo imports it (gw_car).
gw_prefetch_list() {
    GW_PRE=
    [ -n "$GW_URL" ] && [ "$SCHEME" = ipfs ] && [ -n "$CID" ] || return 0
    rm -rf "$GW_DIR" "$WORK/down.G"
    gw_prepare
    (
        JOB_ERR=$GW_DIR/$LST.wget
        fetch_url "$GW_URL/ipfs/$CID${SUBPATH:+/$SUBPATH}/$LST?format=car" "$GW_DIR/$LST.car" "$1"
        _gl_rc=$?
        printf '%s\n%s\n' "$_gl_rc" "$FETCH_ERR" >"$GW_DIR/$LST.pre.part"
        mv -f "$GW_DIR/$LST.pre.part" "$GW_DIR/$LST.pre"
    ) </dev/null &
    GW_PRE=$!
}

# gw_wanted REL: status 0 when REL should come through the gateway: <lst> (so the boot need not wait
# for peers) and the .tcz files, while nobody else may hold their blocks (see the header). The small
# sidecars (.dep, .md5.txt) go over bitswap: one CAR costs about ten processes, a bitswap round trip
# for one block inside the running kubo costs less.
gw_wanted() {
    case $1 in
        "$LST") return 0 ;;
        *.tcz) [ "${MAY_TRADE:-0}" != 1 ] ;;
        *) return 1 ;;
    esac
}

# gw_first DEADLINE_CS: (tce=ipfs:, kubo running) <lst> through the gateway; when that worked the hook
# does not wait for peers: they are dialled in the background (for seeding, and for bitswap should the
# gateway fail later). Status 1 when the gateway is not used or failed (the caller waits for peers).
gw_first() {
    [ -n "$GW_URL" ] && [ "$SCHEME" = ipfs ] || return 1
    if [ -z "$GW_PRE" ]; then
        rm -rf "$GW_DIR" "$WORK/down.G"
        GW_HEAD_LEN=
    fi
    gw_car "$LST" "$1" || return 1
    GW_USED=1
    mark gateway
    if [ -n "$PEERS" ]; then
        # rounds until one answers, as kubo_wait_peers (kubo's own Peering dial backs off for seconds)
        (
            while :; do
                api_connect "$1" >/dev/null 2>&1
                _gf_rc=$?
                [ "$PEERS_OK" -gt 0 ] || [ "$_gf_rc" = 2 ] && break
                tick
                [ "$NOW" -lt "$1" ] || break
                nap 0.5
            done
            log "gateway: peers dialled in the background: $PEERS_OK connected"
            printf '%s\n' "$PEERS_OK" >"$GW_DIR/peers.part" && mv -f "$GW_DIR/peers.part" "$GW_DIR/peers"
        ) </dev/null &
    fi
    return 0
}

# gw_stats: GW_NOTE (ok | failed | empty: not used), GW_CARS and GW_BYTES (CARs imported, their
# bytes), for the status file; PEERS_OK from the background dial when gw_first did not wait.
gw_stats() {
    GW_NOTE=
    GW_CARS=0
    GW_BYTES=0
    [ -n "$GW_URL" ] || return 0
    GW_NOTE=ok
    [ -d "$WORK/down.G" ] && GW_NOTE=failed
    # shellcheck disable=SC2045 # our own plain names; globbing is off in the hook
    for _gs_f in $(ls "$GW_DIR" 2>/dev/null); do
        case $_gs_f in *.ok) ;; *) continue ;; esac
        read -r _gs_n <"$GW_DIR/$_gs_f" 2>/dev/null || continue
        case $_gs_n in '' | *[!0-9]*) continue ;; esac
        GW_CARS=$((GW_CARS + 1))
        GW_BYTES=$((GW_BYTES + _gs_n))
    done
    if [ "$GW_USED" = 1 ] && [ "$PEERS_OK" = 0 ] && [ -f "$GW_DIR/peers" ]; then
        read -r _gs_p <"$GW_DIR/peers" 2>/dev/null
        case $_gs_p in '' | *[!0-9]*) ;; *) PEERS_OK=$_gs_p ;; esac
    fi
}
