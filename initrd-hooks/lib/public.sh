# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# public.sh -- ipfs.net=public: the open IPFS network. The kubo keys it changes (net_keys: into the
# daemon's one-start --init-config, kubo_net_json from kubo_prepare) and the routing stage between
# the daemon's start and the fetch (route_bootstrap, route_providers), each with a deadline of its own inside ipfs.timeout, so a failed boot says which
# stage failed: no route to bootstrap, no providers found, providers unreachable. A LAN peer (mDNS)
# that has the root ends the routing stage at once, whichever wait it is in (route_lan): a machine at
# home next to one that booted the same repo needs no internet.
#
# What public mode sets on top of the test,lowpower profile (src/tce_ipfs/ipfs/netmode.py is the host
# side's copy; tests/test_netmode.py holds the two together):
#   Bootstrap            ipfs.bootstrap, else kubo's defaults ("auto" + AutoConf on: the current mainnet
#                        list, and kubo's delegated HTTP routers next to the DHT: Routing.Type autoclient)
#   Routing.Type         dhtclient (autoclient with kubo's defaults; Routing.Type is kubo.sh's): a small
#                        machine asks the DHT but never serves it
#   Swarm.DisableNatPortMap  false with kubo's defaults (UPnP/NAT-PMP with the home router)
#   Swarm.ResourceMgr    MaxMemory = the Go heap cap: libp2p scales its connection limits from it
#   Provide              roots only (repo root, list, each extension's files: what the pin job pins),
#                        the legacy provider (announces a new pin at once; the sweep provider pays off
#                        only from thousands of CIDs), reprovide every 22 h, 4 workers.
#                        ipfs.seed=0 (any mode): Provide.Enabled false -- nothing is announced.
#   kubo's defaults kept: AutoNAT client, circuit-relay client, hole punching (DCUtR, over TCP).

ROUTE_BOOT_MAX=20   # s: until a first bootstrap peer is connected
ROUTE_FIND_MAX=30   # s: the DHT lookup for providers of the root (retried while the table fills)
ROUTE_DIAL_MAX=20   # s: connecting to the providers found (directly or through their relays)
ROUTE_SELF_MAX=10   # s: to learn our own public address (what peers observe; hole punching sends it)
ROUTE_DIRECT_MAX=30 # s: from the first relayed connection, for hole punching to make it direct (2 rounds)
ROUTE_PROVIDERS=4   # providers asked for, and dialled in parallel
ROUTE_LAN_MAX=5     # s: asking the LAN peers (mDNS) for the root block, once per new set of them
ANNOUNCE_MAX=60     # s: the pin job waits for an answer to "how do peers reach us" before announcing
LAN_ASKED=          # the LAN peers last asked (route_lan)
T_PROVIDER_CS=
PROVIDERS=
ROUTE=

# json_list WORDS...: ["w1", "w2"] (the words are checked multiaddrs: no quotes in them).
json_list() {
    _jl=
    for _jl_w in "$@"; do
        _jl="${_jl:+$_jl, }\"$_jl_w\""
    done
    printf '[%s]' "$_jl"
}

# net_keys: the public-mode keys as "KEY<TAB>JSON" lines (Provide off with ipfs.seed=0), nothing in
# another mode. One list for both ways into the config: kubo_net_json (the one-start path) and
# kubo_init_repo (a config that exists).
net_keys() {
    [ "$NET" = public ] || return 0
    if [ -n "$BOOTSTRAP" ]; then
        # shellcheck disable=SC2086 # multiaddrs: no blanks or globs
        _nk_boot=$(json_list $BOOTSTRAP)
        _nk_auto=false
        _nk_routers='[]'
        _nk_nonat=true
    else
        _nk_boot='["auto"]'
        _nk_auto=true
        _nk_routers='["auto"]'
        _nk_nonat=false
    fi
    printf '%s\t%s\n' \
        Bootstrap "$_nk_boot" \
        AutoConf "{\"Enabled\": $_nk_auto}" \
        Routing.DelegatedRouters "$_nk_routers" \
        Routing.LoopbackAddressesOnLanDHT false \
        Ipns.DelegatedPublishers "$_nk_routers" \
        Swarm.DisableNatPortMap "$_nk_nonat" \
        Swarm.ResourceMgr "{\"MaxMemory\": \"$KUBO_GOMEMLIMIT\"}"
    if [ "$SEED" = 0 ]; then
        printf '%s\t%s\n' Provide '{"Enabled": false}'
    else
        printf '%s\t%s\n' Provide \
            '{"Enabled": true, "Strategy": "roots", "DHT": {"Interval": "22h", "MaxWorkers": 4, "SweepEnabled": false}}'
    fi
}

# kubo_net_json: NETJ_TOP, NETJ_ROUTING, NETJ_SWARM -- net_keys as JSON members (", "-led) for the
# daemon's --init-config (kubo_prepare puts them at the top level and into its Routing and Swarm
# objects); NETJ_RCMGR when they replace Swarm.ResourceMgr. All empty outside public mode.
kubo_net_json() {
    NETJ_TOP=
    NETJ_ROUTING=
    NETJ_SWARM=
    NETJ_RCMGR=
    _nj_ipns=
    net_keys >"$WORK/netkeys"
    while IFS="$(printf '\t')" read -r _nj_key _nj_json; do
        case $_nj_key in
            Routing.*) NETJ_ROUTING="$NETJ_ROUTING, \"${_nj_key#Routing.}\": $_nj_json" ;;
            Swarm.ResourceMgr) NETJ_RCMGR=$_nj_json ;;
            Swarm.*) NETJ_SWARM="$NETJ_SWARM, \"${_nj_key#Swarm.}\": $_nj_json" ;;
            Ipns.*) _nj_ipns="$_nj_ipns${_nj_ipns:+, }\"${_nj_key#Ipns.}\": $_nj_json" ;;
            *) NETJ_TOP="$NETJ_TOP, \"$_nj_key\": $_nj_json" ;;
        esac
    done <"$WORK/netkeys"
    [ -z "$_nj_ipns" ] || NETJ_TOP="$NETJ_TOP, \"Ipns\": {$_nj_ipns}"
    [ "$NET" != public ] || dbg "kubo config: network mode $NET${BOOTSTRAP:+, bootstrap $BOOTSTRAP}, seed $SEED"
}

# count_words WORDS...: COUNT = how many (without touching the caller's positional parameters).
count_words() {
    COUNT=$#
}

# api_call DEADLINE_CS MAXSECS OUT PATH?QUERY: POST to kubo's RPC API (busybox wget); status of wget.
api_call() {
    bounded "$1" "$2" "$WGET" -q -O "$3" --post-data= "$API_URL/api/v0/$4" 2>"$3.err"
}

# peers_of FILE: "PEER ADDR" per connection in a swarm/peers answer.
peers_of() {
    tr '{' '\n' <"$1" 2>/dev/null | awk '{
        a = $0; p = $0
        if (!sub(/.*"Addr":"/, "", a) || !sub(/.*"Peer":"/, "", p)) next
        sub(/".*/, "", a); sub(/".*/, "", p); print p, a
    }'
}

# is_private_ip4 A.B.C.D
is_private_ip4() {
    case $1 in
        10.* | 127.* | 192.168.* | 169.254.* | 172.1[6-9].* | 172.2[0-9].* | 172.3[01].* | 100.6[4-9].* | \
            100.[7-9][0-9].* | 100.1[01][0-9].* | 100.12[0-7].*) return 0 ;;
    esac
    return 1
}

# route_dial DEADLINE_CS: connect to every provider in PROVIDERS at once (kubo finds the addresses,
# relay ones included, in the provider records or by asking the DHT for the peer).
route_dial() {
    _rd_i=0
    _rd_pids=
    for _rd_p in $PROVIDERS; do
        _rd_i=$((_rd_i + 1))
        api_call "$1" "$ROUTE_DIAL_MAX" "$WORK/prov.$_rd_i.out" "swarm/connect?arg=/p2p/$_rd_p" &
        _rd_pids="$_rd_pids $!"
    done
    # shellcheck disable=SC2086
    wait $_rd_pids
}

# lan_peers_of FILE: the peers of a peers_of list connected at a private address (found on the LAN
# by mDNS, or named), sorted, one line.
lan_peers_of() {
    while read -r _lp_p _lp_a; do
        case $_lp_a in /ip4/*/p2p-circuit*) continue ;; /ip4/*) ;; *) continue ;; esac
        _lp_ip=${_lp_a#/ip4/}
        is_private_ip4 "${_lp_ip%%/*}" && echo "$_lp_p"
    done <"$1" | sort -u | tr '\n' ' '
}

# route_lan DEADLINE_CS [PEERS_TXT]: status 0 when a peer on the LAN (mDNS: a machine next to us that
# booted or seeds the same repo) has the root -- then the open network is not needed: ROUTE=lan,
# PROVIDERS those peers. Bitswap asks every connected peer for the root block (one bounded block/stat);
# the ledgers then say whether a LAN peer sent it (not a provider the DHT found meanwhile). Asked again
# only when the set of LAN peers changed. PEERS_TXT: the caller's latest peers_of list.
route_lan() {
    [ "$KUBO_MDNS" = true ] && [ -n "$API_URL" ] && [ -n "$CID" ] || return 1
    if [ -n "${2:-}" ]; then
        _rl_txt=$2
    else
        api_call "$1" 5 "$WORK/lan-peers.json" swarm/peers || return 1
        _rl_txt=$WORK/lan-peers.txt
        peers_of "$WORK/lan-peers.json" >"$_rl_txt"
    fi
    _rl_peers=$(lan_peers_of "$_rl_txt")
    _rl_peers=${_rl_peers% }
    [ -n "$_rl_peers" ] && [ "$_rl_peers" != "$LAN_ASKED" ] || return 1
    LAN_ASKED=$_rl_peers
    api_call "$1" "$ROUTE_LAN_MAX" "$WORK/lan-root.out" "block/stat?arg=$CID&timeout=${ROUTE_LAN_MAX}s" ||
        { dbg "routing: LAN peer(s) $_rl_peers: no root block from them"; return 1; }
    PROVIDERS=
    for _rl_p in $_rl_peers; do
        api_call "$1" 5 "$WORK/lan-ledger.out" "bitswap/ledger?arg=$_rl_p" &&
            grep -q '"Recv": *[1-9]' "$WORK/lan-ledger.out" && PROVIDERS="$PROVIDERS${PROVIDERS:+ }$_rl_p"
    done
    if [ -z "$PROVIDERS" ]; then
        dbg "routing: the root block came, but not from the LAN peer(s) $_rl_peers"
        return 1
    fi
    tick
    T_PROVIDER_CS=$NOW
    ROUTE=lan
    dbg "routing: LAN peer(s) $PROVIDERS have the root: the open network is not needed"
    return 0
}

# route_self_addr DEADLINE_CS: wait (at most ROUTE_SELF_MAX s) until kubo knows a public address of
# its own -- an address enough peers have seen it at. Hole punching sends it to the other side; a node
# that has none yet lets the attempt fail. Behind a symmetric NAT none ever comes: go on regardless.
route_self_addr() {
    tick
    _rs_dl=$((NOW + ROUTE_SELF_MAX * 100))
    [ "$_rs_dl" -le "$1" ] || _rs_dl=$1
    while :; do
        if api_call "$_rs_dl" 5 "$WORK/id.json" id; then
            for _rs_a in $(tr ',[]' '   ' <"$WORK/id.json" | tr ' ' '\n' | sed -n 's|^"/ip4/\([0-9.]*\)/tcp/.*|\1|p'); do
                if ! is_private_ip4 "$_rs_a"; then
                    dbg "routing: our public address is $_rs_a"
                    return 0
                fi
            done
        fi
        tick
        [ "$NOW" -lt "$_rs_dl" ] || break
        nap 0.5
    done
    dbg "routing: no public address of our own yet (symmetric NAT?)"
    return 0
}

# announce_how DEADLINE_CS: print how peers reach this node, status 0, once its addresses say so:
# directly (AutoNAT found it public) or through a relay (a relay address, and no public direct one
# left next to it); status 1 while AutoNAT has not decided.
announce_how() {
    if api_call "$1" 5 "$WORK/announce-nat.json" swarm/addrs/autonat &&
        grep -qi '"reachability" *: *"public"' "$WORK/announce-nat.json"; then
        echo "reachable directly (AutoNAT: public)"
        return 0
    fi
    api_call "$1" 5 "$WORK/announce-id.json" id || return 1
    grep -q /p2p-circuit "$WORK/announce-id.json" || return 1
    for _ah_a in $(tr ',[]' '   ' <"$WORK/announce-id.json" | tr ' ' '\n' | grep -v /p2p-circuit |
        sed -n 's|^"/ip4/\([0-9.]*\)/tcp/.*|\1|p'); do
        is_private_ip4 "$_ah_a" || return 1
    done
    echo "reachable through a relay"
}

# seed_announce_wait DEADLINE_CS: public mode, seeding (the pin job, before it pins). kubo announces a
# pin at once, with the addresses it has at that moment, and the DHT servers keep those with the
# provider record. Before AutoNAT has decided, they hold the home router's outside address as our
# only public one: nobody outside can dial it, and a peer that tries it first leaves a half-open
# entry in its own router's conntrack on the very ports the hole punch uses next -- which then fails
# on it (tests/test_internet_qemu.py, home c). So wait (at most ANNOUNCE_MAX s) until announce_how
# answers; past the bound announce anyway (a record with a bad address beats none).
seed_announce_wait() {
    [ "$NET" = public ] && [ "$SEED" != 0 ] && [ -n "$API_URL" ] || return 0
    tick
    _sa_t0=$NOW
    _sa_dl=$((NOW + ANNOUNCE_MAX * 100))
    [ "$_sa_dl" -le "$1" ] || _sa_dl=$1
    while ! _sa_how=$(announce_how "$_sa_dl"); do
        tick
        if [ "$NOW" -ge "$_sa_dl" ]; then
            _sa_how="reachability still unknown"
            break
        fi
        nap 1
    done
    tick
    fmt_cs "$((NOW - _sa_t0))"
    log "seeding: announcing after $FMT s: $_sa_how"
}

# route_bootstrap DEADLINE_CS: wait (at most ROUTE_BOOT_MAX s) until kubo is connected to a bootstrap
# peer -- one of ipfs.bootstrap, or with kubo's defaults any peer on a public address. Status 1 with
# KUBO_ERR "no route to bootstrap ...".
route_bootstrap() {
    [ -n "$API_URL" ] || return 0
    tick
    _rb_t0=$NOW
    _rb_dl=$((NOW + ROUTE_BOOT_MAX * 100))
    [ "$_rb_dl" -le "$1" ] || _rb_dl=$1
    _rb_ids=
    for _rb_ma in $BOOTSTRAP; do
        _rb_ids="$_rb_ids ${_rb_ma##*/}"
    done
    while :; do
        if api_call "$_rb_dl" 5 "$WORK/peers.json" swarm/peers; then
            peers_of "$WORK/peers.json" >"$WORK/peers.txt"
            route_lan "$_rb_dl" "$WORK/peers.txt" && return 0
            while read -r _rb_p _rb_a; do
                if [ -n "$_rb_ids" ]; then
                    case " $_rb_ids " in *" $_rb_p "*) ;; *) continue ;; esac
                else
                    _rb_ip=${_rb_a#/ip4/}
                    [ "$_rb_ip" != "$_rb_a" ] || continue
                    is_private_ip4 "${_rb_ip%%/*}" && continue
                fi
                tick
                fmt_cs "$((NOW - _rb_t0))"
                dbg "routing: bootstrap peer $_rb_p connected after $FMT s"
                return 0
            done <"$WORK/peers.txt"
        fi
        tick
        [ "$NOW" -lt "$_rb_dl" ] || break
        nap 0.5
    done
    fmt_cs "$((NOW - _rb_t0))"
    if [ -n "$BOOTSTRAP" ]; then
        # shellcheck disable=SC2086 # checked multiaddrs: split on purpose
        count_words $BOOTSTRAP
        KUBO_ERR="no route to bootstrap: none of the $COUNT ipfs.bootstrap peers answered in $FMT s"
    else
        KUBO_ERR="no route to bootstrap: no public peer answered in $FMT s (kubo's default bootstrap peers)"
    fi
    if [ "$NET_HAVE_IP" = 1 ] && [ -z "$("$IP" -4 route show default 2>/dev/null)" ]; then
        KUBO_ERR="$KUBO_ERR; this machine has no default route"
    fi
    return 1
}

# route_providers DEADLINE_CS: find providers of the root in the DHT (ROUTE_FIND_MAX s, lookups
# repeated while the routing table fills), connect to them (ROUTE_DIAL_MAX s: directly, or through the
# relay in their address), then wait (ROUTE_DIRECT_MAX s) for a direct connection -- a relay only
# carries the hole-punching handshake (circuit relay v2 limits it to 128 KiB), never the blocks.
# Sets PROVIDERS T_PROVIDER_CS ROUTE; status 1 with KUBO_ERR naming the stage that failed.
route_providers() {
    [ -n "$API_URL" ] || return 0
    [ "$ROUTE" = lan ] && return 0 # route_bootstrap found the root on the LAN
    tick
    _rp_t0=$NOW
    _rp_dl=$((NOW + ROUTE_FIND_MAX * 100))
    [ "$_rp_dl" -le "$1" ] || _rp_dl=$1
    PROVIDERS=
    _rp_empty=0
    while :; do
        api_call "$_rp_dl" "$ROUTE_FIND_MAX" "$WORK/findprovs.out" \
            "routing/findprovs?arg=$CID&num-providers=$ROUTE_PROVIDERS"
        PROVIDERS=$(awk '/"Type":4[,}]/ {
                while (match($0, /"ID":"[^"]+"/)) { print substr($0, RSTART + 6, RLENGTH - 7); $0 = substr($0, RSTART + RLENGTH) }
            }' "$WORK/findprovs.out" 2>/dev/null | awk '!seen[$0]++' | head -n "$ROUTE_PROVIDERS" | tr '\n' ' ')
        PROVIDERS=${PROVIDERS% }
        [ -n "$PROVIDERS" ] && break
        grep -q 'failed to find any peer in table' "$WORK/findprovs.out" "$WORK/findprovs.out.err" 2>/dev/null &&
            _rp_empty=1
        route_lan "$_rp_dl" && return 0
        tick
        [ "$NOW" -lt "$_rp_dl" ] || break
        nap 1
    done
    tick
    fmt_cs "$((NOW - _rp_t0))"
    if [ -z "$PROVIDERS" ]; then
        if [ "$_rp_empty" = 1 ]; then
            KUBO_ERR="no route to bootstrap: the DHT routing table stayed empty for $FMT s"
        else
            KUBO_ERR="no providers found for $CID (DHT lookup, $FMT s)"
        fi
        return 1
    fi
    T_PROVIDER_CS=$NOW
    # shellcheck disable=SC2086 # peer ids: split on purpose
    count_words $PROVIDERS
    _rp_n=$COUNT
    dbg "routing: $_rp_n provider(s) after $FMT s: $PROVIDERS"
    route_self_addr "$1"
    ROUTE=
    _rp_circ=
    for _rp_round in 1 2; do
        route_dial "$1"
        # The other side first tries to dial us directly (libp2p gives that 5 s), then hole-punches
        # in well under a second. Round 1: two thirds of ROUTE_DIRECT_MAX from the relayed connection;
        # round 2 (redialled) the rest.
        tick
        if [ "$_rp_round" = 1 ]; then
            _rp_dl=$((NOW + ROUTE_DIRECT_MAX * 100))
            [ "$_rp_dl" -le "$1" ] || _rp_dl=$1
            _rp_until=$((NOW + ROUTE_DIRECT_MAX * 200 / 3))
            [ "$_rp_until" -le "$_rp_dl" ] || _rp_until=$_rp_dl
        else
            _rp_until=$_rp_dl
        fi
        while :; do
            if api_call "$_rp_until" 5 "$WORK/peers.json" swarm/peers; then
                peers_of "$WORK/peers.json" >"$WORK/peers.txt"
                _rp_circ= # the relayed connections of the latest answer
                while read -r _rp_p _rp_a; do
                    case " $PROVIDERS " in *" $_rp_p "*) ;; *) continue ;; esac
                    case $_rp_a in
                        */p2p-circuit*)
                            ROUTE=relayed
                            _rp_circ="$_rp_circ $_rp_a/p2p/$_rp_p"
                            ;;
                        *)
                            ROUTE=direct
                            dbg "routing: provider $_rp_p connected directly at $_rp_a"
                            return 0
                            ;;
                    esac
                done <"$WORK/peers.txt"
            fi
            tick
            [ "$NOW" -lt "$_rp_until" ] || break
            nap 0.5
        done
        [ "$ROUTE" = relayed ] || break
        [ "$_rp_round" = 1 ] || break
        # Only relayed: hole punching runs once per relayed connection. Close those (only those: a
        # direct one may just be coming up) and dial again for a second round (the other side may
        # have lacked our public address the first time).
        dbg "routing: only relayed after round 1; dialling again"
        for _rp_ma in $_rp_circ; do
            api_call "$1" 5 "$WORK/disc.out" "swarm/disconnect?arg=$_rp_ma" 2>/dev/null
        done
    done
    if [ "$ROUTE" = relayed ]; then
        KUBO_ERR="providers unreachable: $_rp_n found, reached only through a relay and hole punching did not get through (a relay carries no blocks)"
    else
        # The API answers a failed dial with a bare HTTP 500 to busybox wget: ask once more with the
        # CLI, whose error says why (e.g. "routing: not found": no address for it anywhere).
        _rp_first=${PROVIDERS%% *}
        ipfsc "$1" 10 swarm connect "/p2p/$_rp_first" >"$WORK/prov.cli" 2>&1
        last_line "$WORK/prov.cli"
        LAST=${LAST#"connect $_rp_first failure: "}
        KUBO_ERR="providers unreachable: $_rp_n found, none answered (${LAST:-no connection})"
    fi
    return 1
}
