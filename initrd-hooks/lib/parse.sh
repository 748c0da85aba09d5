# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# parse.sh -- PARSE FIRST: read every boot code into variables and validate it, before anything acts.
#
# parse_scheme: is tce= ours at all?   parse_codes: everything else; problems collect in PARSE_ERRORS
# (one line, "; "-separated) so the user sees all of them at once.
#
# Limits keep absurd values (the kernel allows ~2 KiB of cmdline) from reaching any command.

MAX_TCE=512
MAX_PEERS=16
MAX_BOOTSTRAP=16
MAX_MA=300
MAX_URL=512
MAX_SUB=256
MAX_LST=64
MAX_CAR=256
MIN_TIMEOUT=2
MAX_TIMEOUT=3600
DEFAULT_TIMEOUT=120
DEFAULT_LST=onboot.lst
DEFAULT_PORT=4001
# without ipfs.net: lan when ipfs.peers names the peers, private with ipfs.swarmkey (parse_net)
DEFAULT_NET=public

PARSE_ERRORS=
PARSE_WARNINGS=

perr() {
    PARSE_ERRORS="${PARSE_ERRORS:+$PARSE_ERRORS; }$*"
}

# pwarn TEXT: a warning found while parsing; printed once parsing is done (one line each).
pwarn() {
    PARSE_WARNINGS="${PARSE_WARNINGS:+$PARSE_WARNINGS
}$*"
}

# short TEXT: SHORT = TEXT cut to 60 characters for messages (never echo a 2 KiB value back).
short() {
    SHORT=$(printf '%s' "$1" | cut -c1-60)
    [ "${#1}" -gt 60 ] && SHORT="$SHORT..."
}

# ---------------------------------------------------------------- syntax checks (status only)
is_uint() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
    esac
    [ "${#1}" -le 9 ]
}

is_base58() {
    case $1 in
        '' | *[!123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]*) return 1 ;;
    esac
    return 0
}

is_base32lower() {
    case $1 in
        '' | *[!abcdefghijklmnopqrstuvwxyz234567]*) return 1 ;;
    esac
    return 0
}

is_base36lower() {
    case $1 in
        '' | *[!0123456789abcdefghijklmnopqrstuvwxyz]*) return 1 ;;
    esac
    return 0
}

# is_cid TEXT: CIDv0 (Qm + 44 base58 = 46 chars) or CIDv1 in lower-case base32 (b..., 10..128 chars).
is_cid() {
    case $1 in
        Qm*) [ "${#1}" -eq 46 ] && is_base58 "$1" ;;
        b*) [ "${#1}" -ge 10 ] && [ "${#1}" -le 128 ] && is_base32lower "${1#b}" ;;
        *) return 1 ;;
    esac
}

# cid_problem TEXT: WHY = a human reason TEXT is not a CID.
cid_problem() {
    case $1 in
        '') WHY="it is empty" ;;
        Qm*) WHY="a CIDv0 (Qm...) is 46 base58 characters" ;;
        B*) WHY="CIDv1 must be lower-case base32 (b...)" ;;
        b*) WHY="a CIDv1 is 'b' + 9..127 lower-case base32 characters (a-z, 2-7)" ;;
        *) WHY="a CID starts with Qm (v0) or b (v1, base32)" ;;
    esac
}

# is_peerid TEXT: base58 (Qm..., 12D3KooW...), base32 CIDv1 (b...) or base36 (k...).
is_peerid() {
    [ "${#1}" -ge 40 ] && [ "${#1}" -le 100 ] || return 1
    case $1 in
        Qm* | 1*) is_base58 "$1" ;;
        b*) is_base32lower "${1#b}" ;;
        k*) is_base36lower "${1#k}" ;;
        *) return 1 ;;
    esac
}

# is_ipns_name TEXT: a libp2p key (k51..., 12D3KooW..., Qm..., b...) or a DNSLink domain.
is_ipns_name() {
    [ "${#1}" -le 253 ] || return 1
    is_peerid "$1" && return 0
    case $1 in
        *[!a-z0-9.-]* | .* | *. | *..* | -* | *-) return 1 ;;
        *.*) return 0 ;;
    esac
    return 1
}

# is_safe_path TEXT: "a/b/c" with components of [A-Za-z0-9._+-], none "." or "..", no "//".
is_safe_path() {
    case $1 in
        '' | /* | */ | *//* | *[!A-Za-z0-9._+/-]*) return 1 ;;
        . | .. | ./* | ../* | */. | */.. | */./* | */../*) return 1 ;;
    esac
    return 0
}

# is_safe_name TEXT: one file name: [A-Za-z0-9][A-Za-z0-9._+-]*, no "..".
is_safe_name() {
    case $1 in
        '' | [!A-Za-z0-9]* | *[!A-Za-z0-9._+-]* | *..*) return 1 ;;
    esac
    return 0
}

# is_http_url TEXT: http://host[:port][/path]; no credentials, query, "..", or odd characters.
is_http_url() {
    [ "${#1}" -le "$MAX_URL" ] || return 1
    case $1 in
        http://*) ;;
        *) return 1 ;;
    esac
    _u_rest=${1#http://}
    _u_host=${_u_rest%%/*}
    _u_name=${_u_host%:*}
    case $_u_name in
        '' | *[!A-Za-z0-9.-]* | .* | -*) return 1 ;;
    esac
    if [ "$_u_name" != "$_u_host" ]; then
        _u_port=${_u_host##*:}
        is_uint "$_u_port" && [ "$_u_port" -ge 1 ] && [ "$_u_port" -le 65535 ] || return 1
    fi
    [ "$_u_rest" = "$_u_host" ] && return 0
    _u_path=${_u_rest#*/}
    _u_path=${_u_path%/}
    [ -z "$_u_path" ] && return 0
    is_safe_path "$_u_path"
}

# url_arg NAME SHAPE: URL_ARG = the value of NAME= without its trailing slash when it is a plain http://
# URL (is_http_url), else empty with one error naming the SHAPE it must have.
url_arg() {
    URL_ARG=
    _ua_v=$(getarg "$1") || return 0
    if is_http_url "$_ua_v"; then
        URL_ARG=${_ua_v%/}
    else
        short "$_ua_v"
        perr "$1=$SHORT is not a plain $2 URL"
    fi
}

# is_ip4 TEXT: dotted quad, each part 0..255.
is_ip4() {
    case $1 in
        *[!0-9.]* | .* | *. | *..*) return 1 ;;
    esac
    _i4_old=$IFS
    IFS=.
    # shellcheck disable=SC2086
    set -- $1
    IFS=$_i4_old
    [ "$#" -eq 4 ] || return 1
    for _i4_p in "$@"; do
        [ "${#_i4_p}" -le 3 ] && [ "$_i4_p" -le 255 ] || return 1
    done
    return 0
}

# is_multiaddr TEXT: /ip4|ip6|dns|dns4|dns6/<addr>/tcp|udp/<port>[/quic-v1|/ws]/p2p/<peer id>,
# or /dnsaddr/<domain>/p2p/<peer id>. `ipfs swarm connect` needs the peer id.
is_multiaddr() {
    [ "${#1}" -le "$MAX_MA" ] || return 1
    case $1 in
        /*) ;;
        *) return 1 ;;
    esac
    case $1 in
        *//* | */ | *[!A-Za-z0-9./:_-]*) return 1 ;;
    esac
    _ma_old=$IFS
    IFS=/
    # shellcheck disable=SC2086
    set -- ${1#/}
    IFS=$_ma_old
    [ "$#" -ge 4 ] || return 1
    case $1 in
        ip4) is_ip4 "$2" || return 1 ;;
        ip6) case $2 in *[!0-9a-fA-F:]* | '') return 1 ;; esac ;;
        dns | dns4 | dns6 | dnsaddr) case $2 in *[!A-Za-z0-9.-]* | '') return 1 ;; esac ;;
        *) return 1 ;;
    esac
    _ma_proto=$1
    shift 2
    if [ "$_ma_proto" != dnsaddr ]; then
        case $1 in
            tcp | udp) ;;
            *) return 1 ;;
        esac
        is_uint "$2" && [ "$2" -ge 1 ] && [ "$2" -le 65535 ] || return 1
        shift 2
        case $1 in
            quic-v1 | quic | ws) shift ;;
        esac
    fi
    [ "$#" -eq 2 ] || return 1
    case $1 in
        p2p | ipfs) ;;
        *) return 1 ;;
    esac
    is_peerid "$2"
}

# lst_reserved NAME: status 0 when a list named NAME would collide with something in the directories
# it is written to (/tmp/builtin, /tmp/tce): the optional/ and ondemand/ directories, TC's copy2fs
# files, a *.gz (tce-setup unpacks those found in a tce dir), or anything there that is not a file.
# Reads only.
lst_reserved() {
    case $1 in
        optional | ondemand | copy2fs.flg | copy2fs.lst | *.gz) return 0 ;;
    esac
    for _lr_d in "$ROOT/tmp/builtin" "$ROOT/tmp/tce"; do
        if [ -e "$_lr_d/$1" ] || [ -L "$_lr_d/$1" ]; then
            [ -f "$_lr_d/$1" ] && [ ! -L "$_lr_d/$1" ] || return 0
        fi
    done
    return 1
}

# ---------------------------------------------------------------- parsing
# parse_scheme: sets TCE_RAW and SCHEME (ipfs|ipns|http). Status 1 when tce= is absent or not ours:
# then the hook does nothing at all and TC carries on exactly as without it.
parse_scheme() {
    TCE_RAW=$(getarg tce) || return 1
    case $TCE_RAW in
        ipfs:*) SCHEME=ipfs ;;
        ipns:*) SCHEME=ipns ;;
        http://*) SCHEME=http ;;
        *) return 1 ;;
    esac
    return 0
}

# parse_ma_list CODE VALUE MAX: VALUE is CODE's comma-separated multiaddrs (each with a peer id, at
# most MAX). Sets MA_LIST (space-separated, the good ones); every bad entry is one perr.
parse_ma_list() {
    MA_LIST=
    _m_n=0
    _m_old=$IFS
    IFS=,
    for _m_ma in $2; do
        IFS=$_m_old
        [ -n "$_m_ma" ] || continue
        _m_n=$((_m_n + 1))
        if [ "$_m_n" -gt "$3" ]; then
            perr "$1= lists more than $3 peers"
            break
        fi
        if is_multiaddr "$_m_ma"; then
            MA_LIST="${MA_LIST:+$MA_LIST }$_m_ma"
        else
            short "$_m_ma"
            perr "$1: '$SHORT' is not a multiaddr with a peer id (/ip4/A.B.C.D/tcp/PORT/p2p/ID)"
        fi
    done
    IFS=$_m_old
    [ -n "$MA_LIST" ] || [ "$_m_n" -gt 0 ] || perr "$1= is empty"
}

# parse_codes: validate tce= and every companion code. Sets:
# CID IPNS_NAME SUBPATH HTTP_URL LST PEERS TIMEOUT MIRROR SEED ONECOPY MDNS SWARMKEY DEBUG PORT NODHCP
# NET BOOTSTRAP CAR_DEV CAR_PATH GW_URL
parse_codes() {
    CID=
    IPNS_NAME=
    SUBPATH=
    HTTP_URL=
    if [ "${#TCE_RAW}" -gt "$MAX_TCE" ]; then
        perr "tce= is ${#TCE_RAW} characters long (at most $MAX_TCE)"
    else
        case $SCHEME in
            ipfs | ipns)
                _p_v=${TCE_RAW#*:}
                _p_id=${_p_v%%/*}
                _p_sub=
                [ "$_p_id" = "$_p_v" ] || _p_sub=${_p_v#*/}
                _p_sub=${_p_sub%/}
                if [ "$SCHEME" = ipfs ]; then
                    if is_cid "$_p_id"; then
                        CID=$_p_id
                    else
                        cid_problem "$_p_id"
                        short "$_p_id"
                        perr "tce=ipfs:$SHORT is not a CID ($WHY)"
                    fi
                else
                    if is_ipns_name "$_p_id"; then
                        IPNS_NAME=$_p_id
                    else
                        short "$_p_id"
                        perr "tce=ipns:$SHORT is not an IPNS name (k51... key, 12D3KooW... peer id, or a domain)"
                    fi
                fi
                if [ -n "$_p_sub" ]; then
                    if [ "${#_p_sub}" -gt "$MAX_SUB" ] || ! is_safe_path "$_p_sub"; then
                        short "$_p_sub"
                        perr "subpath '$SHORT' after the $SCHEME id is unsafe (allowed: a/b/c of [A-Za-z0-9._+-], no '.', '..' or '//')"
                    else
                        SUBPATH=$_p_sub
                    fi
                fi
                ;;
            http)
                if is_http_url "$TCE_RAW"; then
                    HTTP_URL=${TCE_RAW%/}
                else
                    short "$TCE_RAW"
                    perr "tce=$SHORT is not a plain http://host[:port]/path URL"
                fi
                ;;
        esac
    fi

    LST=$DEFAULT_LST
    if _p_v=$(getarg lst); then
        if [ "${#_p_v}" -gt "$MAX_LST" ] || ! is_safe_name "$_p_v"; then
            short "$_p_v"
            perr "lst=$SHORT is not a plain file name (at most $MAX_LST of [A-Za-z0-9._+-])"
        elif lst_reserved "$_p_v"; then
            perr "lst=$_p_v names a file or directory TC or the hook uses (optional, ondemand, copy2fs.*, *.gz, or an existing non-file)"
        else
            LST=$_p_v
        fi
    fi

    PEERS=
    if _p_v=$(getarg ipfs.peers); then
        parse_ma_list ipfs.peers "$_p_v" "$MAX_PEERS"
        PEERS=$MA_LIST
    fi

    TIMEOUT=$DEFAULT_TIMEOUT
    if _p_raw=$(getarg ipfs.timeout); then
        _p_v=${_p_raw%s}
        if is_uint "$_p_v" && [ "$_p_v" -ge "$MIN_TIMEOUT" ] && [ "$_p_v" -le "$MAX_TIMEOUT" ]; then
            TIMEOUT=$_p_v
        else
            short "$_p_raw"
            perr "ipfs.timeout=$SHORT must be whole seconds between $MIN_TIMEOUT and $MAX_TIMEOUT"
        fi
    fi

    url_arg ipfs.mirror "http://host[:port]/path"
    MIRROR=$URL_ARG
    url_arg ipfs.gateway "http://host[:port]"
    GW_URL=$URL_ARG

    SEED=$(getargbool 1 ipfs.seed)
    [ "$SEED" = "?" ] && { SEED=1; perr "ipfs.seed= must be 0 or 1"; }
    ONECOPY=$(getargbool 1 ipfs.onecopy)
    [ "$ONECOPY" = "?" ] && { ONECOPY=1; perr "ipfs.onecopy= must be 0 or 1"; }
    MDNS=$(getargbool 1 ipfs.mdns)
    [ "$MDNS" = "?" ] && { MDNS=1; perr "ipfs.mdns= must be 0 or 1"; }
    DEBUG=$(getargbool 0 ipfs.debug)
    [ "$DEBUG" = "?" ] && { DEBUG=1; perr "ipfs.debug= must be 0 or 1"; }

    SWARMKEY=
    if _p_v=$(getarg ipfs.swarmkey); then
        case $_p_v in
            *[!0-9a-fA-F]* | '') perr "ipfs.swarmkey= must be 64 hex digits" ;;
            *)
                if [ "${#_p_v}" -eq 64 ]; then
                    SWARMKEY=$(printf '%s' "$_p_v" | tr 'A-F' 'a-f')
                else
                    perr "ipfs.swarmkey= must be 64 hex digits (got ${#_p_v})"
                fi
                ;;
        esac
    fi

    PORT=$DEFAULT_PORT
    if _p_v=$(getarg ipfs.port); then
        if is_uint "$_p_v" && [ "$_p_v" -le 65535 ]; then
            PORT=$_p_v
        else
            short "$_p_v"
            perr "ipfs.port=$SHORT must be a TCP port (0..65535, 0 = any)"
        fi
    fi

    NODHCP=0
    hasarg nodhcp && NODHCP=1

    # ipfs.car=<sdb1 | /dev/sdb1 | LABEL=name | UUID=id>:<path on that disk> (lib/car.sh)
    CAR_DEV=
    CAR_PATH=
    if _p_v=$(getarg ipfs.car); then
        _p_dev=${_p_v%%:*}
        _p_path=${_p_v#*:}
        _p_path=${_p_path#/}
        case $_p_dev in
            LABEL=* | UUID=*) _p_id=${_p_dev#*=} ;;
            *) _p_id=${_p_dev#/dev/} ;;
        esac
        if [ "$_p_dev" != "$_p_v" ] && [ "${#_p_v}" -le "$MAX_CAR" ] && is_safe_name "$_p_id" &&
            is_safe_path "$_p_path"; then
            CAR_DEV=$_p_dev
            CAR_PATH=$_p_path
        else
            short "$_p_v"
            perr "ipfs.car=$SHORT is not <device, LABEL=name or UUID=id>:<path> (e.g. LABEL=TCE:/repo.car)"
        fi
    fi

    parse_net

    # (public mode finds peers through routing: no ipfs.peers needed there)
    if [ "$SCHEME" != http ] && [ "$MDNS" = 0 ] && [ -z "$PEERS" ] && [ "$NET" != public ]; then
        pwarn "ipfs.mdns=0 without ipfs.peers: no peer can be found"
    fi
    if [ "$SCHEME" = http ] && { [ -n "$PEERS" ] || [ -n "$SWARMKEY" ]; }; then
        pwarn "tce=http://... does not use IPFS: ipfs.peers/ipfs.swarmkey are ignored"
    fi
    if [ "$SCHEME" = http ] && [ -n "$GW_URL" ]; then
        pwarn "tce=http://... does not use IPFS: ipfs.gateway is ignored"
        GW_URL=
    fi
    return 0
}

# parse_net: NET (public|lan|private) and BOOTSTRAP, after ipfs.peers and ipfs.swarmkey (the default
# depends on them): private with a swarm key; lan when ipfs.peers names the peers (a lab's boot line:
# keep to them); public otherwise -- a machine at home with just tce=ipfs:<CID> asks the IPFS network.
parse_net() {
    NET=
    if _p_v=$(getarg ipfs.net); then
        case $_p_v in
            public | lan | private) NET=$_p_v ;;
            *)
                short "$_p_v"
                perr "ipfs.net=$SHORT must be public, lan or private"
                ;;
        esac
    fi
    if [ -n "$SWARMKEY" ]; then
        [ "$NET" = public ] && perr "ipfs.net=public cannot go with ipfs.swarmkey (a private swarm stays private)"
        NET=private
    elif [ "$NET" = private ]; then
        perr "ipfs.net=private needs ipfs.swarmkey"
    fi
    if [ -z "$NET" ]; then
        NET=$DEFAULT_NET
        [ -n "$PEERS" ] && NET=lan
        hasarg ipfs.swarmkey && NET=private
    fi

    BOOTSTRAP=
    if _p_v=$(getarg ipfs.bootstrap); then
        parse_ma_list ipfs.bootstrap "$_p_v" "$MAX_BOOTSTRAP"
        BOOTSTRAP=$MA_LIST
        [ "$NET" = public ] || [ -z "$BOOTSTRAP" ] || pwarn "ipfs.bootstrap is for ipfs.net=public; ignored in $NET mode"
    fi
}
