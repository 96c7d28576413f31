/*
 * Leveled logging to stderr, one line per message:
 *
 *     2026-11-26T04:30:00.123Z warn  watch: skipping fifo vol1/a/p
 *
 * Under systemd, when stderr is the journal's stream (JOURNAL_STREAM names
 * stderr's device and inode), each line starts with the level as a syslog
 * priority instead of a timestamp, which journald adds itself:
 *
 *     <4>warn  watch: skipping fifo vol1/a/p
 *
 * so that `journalctl -p warning` shows warnings and errors only.
 *
 * The level is checked before the message is formatted, so a disabled
 * debug line costs one comparison.  log_* may be called from any thread;
 * each line is written with a single write(2) so lines never interleave.
 */
#ifndef KRAKEN_LOG_H
#define KRAKEN_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Set on a reload (SIGHUP) while other threads log: an atomic, read
 * relaxed (a line at the old level around a reload is fine). */
extern atomic_int log_threshold;

void log_set_level(enum log_level level);
/* Parses "error", "warn", "info", "debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);
/* Looks at JOURNAL_STREAM and stderr once: call it at start-up, and again
 * if stderr is replaced.  Returns true when lines now carry priorities. */
bool log_detect_journal(void);

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_at(lvl, mod, ...) \
	do { \
		if ((int)(lvl) <= atomic_load_explicit(&log_threshold, \
						       memory_order_relaxed)) \
			log_msg((lvl), (mod), __VA_ARGS__); \
	} while (0)
#define log_error(mod, ...) log_at(LOG_ERROR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_at(LOG_WARN, mod, __VA_ARGS__)
#define log_info(mod, ...) log_at(LOG_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...) log_at(LOG_DEBUG, mod, __VA_ARGS__)

#endif
