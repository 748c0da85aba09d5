# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# net.sh -- bring the network up ourselves: TC starts DHCP only after extensions load.
#
# Like TC's dhcp.sh: every wired interface (eth*, also en* for predictable names) that has no IPv4
# address gets `udhcpc -b` with the pid file TC uses, so TC's own dhcp.sh later skips it. We pass our
# own event script (-s): busybox's default script path differs between builds. `nodhcp` is honoured:
# then we only wait for an address configured some other way (e.g. the kernel's ip=).

UDHCPC_SCRIPT=$HOOK_LIB/udhcpc.script
NET_IFACE=
NET_ADDR=
NET_SEEN=
NET_STARTED=" "
NET_HAVE_IP=1

# net_ifaces: print candidate interface names from /proc/net/dev.
net_ifaces() {
    awk -F: 'NR > 2 { gsub(/[ \t]/, "", $1); if ($1 ~ /^(eth|en)[A-Za-z0-9]*$/) print $1 }' \
        "$ROOT/proc/net/dev" 2>/dev/null
}

# net_addr IFACE: ADDR = first IPv4 address of IFACE, or empty. With `ip` (a.b.c.d/len) when this
# busybox has it, else from `ifconfig` (TC's own scripts use ifconfig).
net_addr() {
    if [ "$NET_HAVE_IP" = 1 ]; then
        ADDR=$("$IP" -4 -o addr show dev "$1" 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "inet") { print $(i + 1); exit } }')
    else
        ADDR=$("$IFCONFIG" "$1" 2>/dev/null | awk '/inet addr:/ { sub(/.*inet addr:/, ""); print $1; exit }
            $1 == "inet" && $2 ~ /^[0-9]/ { print $2; exit }')
    fi
}

# link_up IFACE
link_up() {
    if [ "$NET_HAVE_IP" = 1 ]; then
        "$IP" link set "$1" up 2>/dev/null
    else
        "$IFCONFIG" "$1" up 2>/dev/null
    fi
}

# net_scan: one pass over the interfaces: status 0 (NET_IFACE, NET_ADDR set) if one has an address;
# otherwise start udhcpc on every interface not started yet. NET_SEEN = interfaces present.
net_scan() {
    NET_SEEN=
    for _n_if in $(net_ifaces); do
        NET_SEEN="$NET_SEEN${NET_SEEN:+ }$_n_if"
        net_addr "$_n_if"
        if [ -n "$ADDR" ]; then
            NET_IFACE=$_n_if
            NET_ADDR=$ADDR
            dbg "network: $NET_IFACE has $NET_ADDR"
            return 0
        fi
        case $NET_STARTED in *" $_n_if "*) continue ;; esac
        NET_STARTED="$NET_STARTED$_n_if "
        [ "$NODHCP" = 1 ] && continue
        link_up "$_n_if"
        mkdir -p "$ROOT/var/run"
        dbg "network: udhcpc on $_n_if"
        "$UDHCPC" -b -i "$_n_if" -s "$UDHCPC_SCRIPT" -p "$ROOT/var/run/udhcpc.$_n_if.pid" \
            -T 1 -t 10 -A 3 >>"$WORK/udhcpc.log" 2>&1 </dev/null &
    done
    return 1
}

# net_kick: bring lo up and start DHCP, without waiting (kubo's repo is prepared meanwhile).
net_kick() {
    NET_HAVE_IP=0
    "$IP" -4 -o addr show dev lo >/dev/null 2>&1 && NET_HAVE_IP=1
    link_up lo
    net_scan
}

# net_up DEADLINE_CS: status 0 once some interface has an IPv4 address (NET_IFACE, NET_ADDR set).
net_up() {
    while :; do
        net_scan && { mark net; return 0; }
        secs_left "$1"
        if [ "$LEFT" -le 0 ]; then
            if [ -z "$NET_SEEN" ]; then
                NET_ERR="no network interface (eth*/en*) appeared"
            elif [ "$NODHCP" = 1 ]; then
                NET_ERR="no IPv4 address on $NET_SEEN (nodhcp is set)"
            else
                NET_ERR="no DHCP lease on $NET_SEEN"
            fi
            return 1
        fi
        nap 0.25
    done
}
