# shellcheck shell=sh
# shellcheck disable=SC2034 # globals here are shared with the other modules of the hook
# loader.sh -- which loader tce-setup hands /tmp/builtin/<lst> to, and what that means for ipfs.tcz.
#
# kubo must run before TC's loader does, so we mount ipfs.tcz ourselves, at /tmp/tcloop/ipfs (loop,
# ro): where TC's loaders put it, so it ends up mounted exactly once. What happens next depends on
# the loader:
#   tce-load (TC x86/x86_64: `tce-load -i -b -t /tmp/builtin <names>`) finds the mount in /etc/mtab,
#     skips its own mount, links the tree into / (`cp -ais`) and queues the install script in
#     /tmp/setup.lst (tce-setup runs it last, as root). So ipfs.tcz goes first in <lst>.
#   tce-bootload (piCore: `tce-bootload /tmp/builtin <names>`) makes /tmp/tcloop/<name> with a plain
#     mkdir that fails on an existing directory (that mount child dies), then links (`cp -r -f -s`)
#     and runs install scripts at once with sudo. So ipfs.tcz stays OUT of <lst>, and we complete its
#     load the way tce-bootload would: link it, then run its install script as root (or leave an
#     empty marker when it has none) -- once; its slow part in the background, after tce-setup.

LOADER=tce-load
KUBO_ADOPT_MAX=120 # seconds for ipfs.tcz's install script's work (`ipfs init` for the TC user), after
                   # up to 600 s of waiting for tce-setup

# loader_detect: LOADER = tce-bootload when piCore's loader is there, else tce-load.
loader_detect() {
    LOADER=tce-load
    [ -e "$ROOT/usr/bin/tce-bootload" ] && LOADER=tce-bootload
    return 0
}

# loader_lists_kubo: status 0 when ipfs.tcz (mounted by us) belongs in <lst>.
loader_lists_kubo() {
    [ "$KUBO_MOUNTED" = 1 ] && [ "$LOADER" = tce-load ]
}

# loader_adopt_kubo: under tce-bootload, complete ipfs.tcz's load ourselves (see the top).
loader_adopt_kubo() {
    [ "$KUBO_MOUNTED" = 1 ] && [ "$LOADER" = tce-bootload ] || return 0
    _la_script=$ROOT/usr/local/tce.installed/ipfs
    if [ -e "$_la_script" ]; then
        dbg "ipfs.tcz: already loaded (/usr/local/tce.installed/ipfs exists)"
        return 0
    fi
    if ! (set +f && cp -r -f -s "$KUBO_MNT"/* "$ROOT/") >"$WORK/adopt.err" 2>&1; then
        last_line "$WORK/adopt.err"
        err "ipfs.tcz: cannot link /tmp/tcloop/ipfs into /: ${LAST:-cp failed}"
        return 1
    fi
    if [ -x "$_la_script" ]; then
        # The script makes the TC user's ~/.ipfs: six kubo CLI starts, ~6 s of CPU on a slow board,
        # and nothing needs it before someone runs ipfs. Under tce-load it defers that itself (it
        # finds itself in /tmp/setup.lst); tce-bootload keeps no such list, so it is started the same
        # way here: `--now <tce-setup's pid>` waits in the background until tce-setup (our parent)
        # is done, at the lowest priority, and the boot goes on at once.
        log "ipfs.tcz: ran /usr/local/tce.installed/ipfs (piCore: as tce-bootload would; its work waits in the background until tce-setup is done)"
        (
            timeout "$((KUBO_ADOPT_MAX + 600))" "$_la_script" --now "$PPID" </dev/null >>"$LOG" 2>&1
            _la_rc=$?
            [ "$_la_rc" = 0 ] || log "ipfs.tcz: its install script exited $_la_rc"
        ) </dev/null >/dev/null 2>&1 &
    else
        printf '' >"$_la_script" 2>/dev/null
    fi
    dbg "ipfs.tcz: loaded in place of tce-bootload"
    return 0
}
