/*
 * The service manager's notification protocol (sd_notify), without
 * linking libsystemd: one datagram of "KEY=VALUE\n" lines to the unix
 * socket named by $NOTIFY_SOCKET ("@name" is an abstract socket).
 *
 * Outside systemd (no NOTIFY_SOCKET) every call is a no-op returning 0,
 * so the agent runs the same way under systemd, in a container or from a
 * shell.  The watchdog interval comes from $WATCHDOG_USEC, honoured only
 * when $WATCHDOG_PID is unset or names this process (so a child that
 * inherited the environment does not ping for its parent).
 */
#ifndef KRAKEN_NOTIFY_H
#define KRAKEN_NOTIFY_H

#include <stdint.h>

/* Sends STATE ("READY=1", "WATCHDOG=1", "STATUS=...", several lines
 * allowed).  0, 0 when there is no service manager, or -errno. */
int notify_send(const char *state);

/* The watchdog interval in ns asked by the service manager, 0 for none. */
int64_t notify_watchdog_ns(void);

#endif
