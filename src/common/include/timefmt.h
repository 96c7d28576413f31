/*
 * Times as users write them, one grammar for every tool: the REST API's
 * since=, until= and at=, and kraken-journal's --since, --until and
 * --at.
 *
 *   2026-01-02T03:04:05Z          RFC 3339: 'T', 't' or ' ' between date
 *   2026-01-02 03:04:05.5+02:00   and time, a fraction (to the nanosecond)
 *   2026-01-02T03:04:05           and an offset ("Z", "+HH:MM", "-HH:MM")
 *                                 optional; none is UTC
 *   2026-01-02                    midnight UTC
 *   @1767225600[.123456789]       seconds since the epoch, as the journal's
 *                                 "at" fields give them exactly
 *   90s, 15m, 2h, 3d              that long before now
 *
 * Nothing before 1970 and nothing past what int64_t nanoseconds hold.
 */
#ifndef KRAKEN_TIMEFMT_H
#define KRAKEN_TIMEFMT_H

#include <stdint.h>

/* S as nanoseconds since the epoch into *OUT; NOW_NS anchors the ages.
 * 0 or -EINVAL. */
int timefmt_parse(const char *s, int64_t now_ns, int64_t *out);

#endif
