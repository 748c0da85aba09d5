# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# car.sh -- USB seeding: ipfs.car=<device>:<path> names a CAR file (`tce-ipfs car export`) on a disk;
# the hook imports it into its kubo before dialling anyone, so a machine with no peer and no mirror
# boots its onboot set from a USB stick. Nothing else changes: the files still come through kubo's
# gateway (blocks checked against their CIDs), md5 and dependencies are checked as always, and kubo
# serves them to the LAN afterwards.
#
# <device>: a kernel name (sdb1, /dev/sdb1, mmcblk0p1), LABEL=<label> or UUID=<uuid> (looked up with
# findfs or blkid). The disk is mounted read-only at $WORK/car, the CAR imported with
# `ipfs dag import` and the disk unmounted again. For tce=ipfs:<CID>, <CID> is then pinned OFFLINE:
# that walks its whole DAG in the local repo and fails at once on a missing block (a truncated or
# wrong CAR) instead of asking the network; when it holds, the hook does not wait for peers.
# Any problem is ONE console line and the normal fetch path goes on (peers, mirror).

CAR_DIR=$WORK/car
CAR_WAIT=10   # seconds a USB disk may take to appear (usb-storage enumerates after the kernel boots)
CAR_MAX=300   # seconds for the import (blocks are written to a RAM repo: a 1 GiB CAR takes ~1 min)
CAR_NOTE=     # for the status file: ok, imported (tce=ipns:) or failed (the why is on the console)
tool BLKID blkid
tool FINDFS findfs
tool UMOUNT umount

# car_device: CAR_NODE = the device node for CAR_DEV ("" when it is not there yet).
car_device() {
    CAR_NODE=
    case $CAR_DEV in
        LABEL=* | UUID=*)
            # findfs (busybox, util-linux) prints the device; else blkid, which busybox and util-linux
            # both print as: /dev/sdb1: LABEL="TCE" UUID="..." TYPE="vfat"
            CAR_NODE=$("$FINDFS" "$CAR_DEV" 2>/dev/null)
            [ -n "$CAR_NODE" ] || CAR_NODE=$("$BLKID" 2>/dev/null | awk -v want="${CAR_DEV%%=*}=\"${CAR_DEV#*=}\"" \
                'index(" " $0 " ", " " want " ") { sub(/:.*/, ""); print; exit }')
            [ -z "$CAR_NODE" ] || CAR_NODE=$ROOT/dev/${CAR_NODE##*/}
            ;;
        *) CAR_NODE=$ROOT/dev/${CAR_DEV#/dev/} ;;
    esac
    [ -n "$CAR_NODE" ] && [ -e "$CAR_NODE" ] || CAR_NODE=
}

# car_fail WHY: the one console line; status 1.
car_fail() {
    CAR_NOTE=failed
    err "ipfs.car=$CAR_DEV:/$CAR_PATH: $1; fetching as usual"
    return 1
}

# car_seed DEADLINE_CS: import the CAR (kubo running). Status 0 only when it holds the root to boot
# (tce=ipfs:); 1 otherwise (no ipfs.car, a problem, or tce=ipns: whose name peers still resolve).
car_seed() {
    [ -n "$CAR_DEV" ] || return 1
    for _cs_m in usb-storage sd_mod uas vfat nls_cp437 nls_iso8859-1 ext4 isofs; do
        "$MODPROBE" -q "$_cs_m" 2>/dev/null
    done
    tick
    _cs_until=$((NOW + CAR_WAIT * 100))
    [ "$_cs_until" -le "$1" ] || _cs_until=$1
    while car_device && [ -z "$CAR_NODE" ]; do
        tick
        [ "$NOW" -lt "$_cs_until" ] || break
        nap 0.25
    done
    [ -n "$CAR_NODE" ] || { car_fail "no such disk after $CAR_WAIT s"; return 1; }
    mkdir -p "$CAR_DIR"
    # shellcheck disable=SC2153 # MOUNT and MODPROBE are lib.sh's
    if ! bounded "$1" 30 "$MOUNT" -o ro "$CAR_NODE" "$CAR_DIR" >"$WORK/car.err" 2>&1; then
        last_line "$WORK/car.err"
        car_fail "cannot mount ${CAR_NODE#"$ROOT"}: ${LAST:-mount failed}"
        return 1
    fi
    if [ ! -f "$CAR_DIR/$CAR_PATH" ]; then
        "$UMOUNT" "$CAR_DIR" 2>/dev/null
        car_fail "no such file on ${CAR_NODE#"$ROOT"}"
        return 1
    fi
    dbg "importing $CAR_DEV:/$CAR_PATH into kubo"
    ipfsc "$1" "$CAR_MAX" dag import --pin-roots=false --stats=false "$CAR_DIR/$CAR_PATH" \
        >"$WORK/car.out" 2>"$WORK/car.err"
    _cs_rc=$?
    "$UMOUNT" "$CAR_DIR" 2>/dev/null
    if [ "$_cs_rc" != 0 ]; then
        last_line "$WORK/car.err"
        case $_cs_rc in 124 | 137 | 143) LAST="timed out" ;; esac
        car_fail "import failed (truncated or not a CAR?): ${LAST:-exit $_cs_rc}"
        return 1
    fi
    if [ "$SCHEME" != ipfs ]; then
        CAR_NOTE=imported
        info "imported $CAR_DEV:/$CAR_PATH (the name is still resolved through peers)"
        return 1
    fi
    if ! ipfsc "$1" "$CAR_MAX" --offline pin add --progress=false "/ipfs/$CID" >"$WORK/car.out" 2>"$WORK/car.err"; then
        last_line "$WORK/car.err"
        car_fail "it does not hold all of $CID (truncated, or another root?): ${LAST:-pin failed}"
        return 1
    fi
    CAR_NOTE=ok
    P_DESC="$P_DESC (CAR $CAR_DEV:/$CAR_PATH)"
    info "imported $CAR_DEV:/$CAR_PATH: all of $CID is here, not waiting for peers"
    return 0
}
