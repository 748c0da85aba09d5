#!/bin/sh
# test base: emulates TC's /etc/init.d/dhcp.sh (tinycore-facts §5): udhcpc -b on every eth?/tr? that has
# no address yet, then return before any lease arrives. TC first waits for udev to settle (no udev here).
# Debian's busybox looks for /etc/udhcpc/default.script, TC's for /usr/share/udhcpc/default.script:
# pass -s so TC's script is used.
# shellcheck source=qemu/tc-base/rootfs/etc/init.d/tc-functions
. /etc/init.d/tc-functions

# shellcheck disable=SC2013 # interface names are words
for DEVICE in $(awk -F: '/eth.:|tr.:/ { print $1 }' /proc/net/dev 2>/dev/null); do
	if ! ifconfig "$DEVICE" | grep -q "inet addr"; then
		/sbin/udhcpc -b -i "$DEVICE" -x hostname:"$(/bin/hostname)" -p /var/run/udhcpc."$DEVICE".pid \
			-s /usr/share/udhcpc/default.script > /dev/null 2>&1 &
		sleep 1
	fi
done
