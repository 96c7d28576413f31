/*
 * Config keys a reload does not apply (reload.c).
 */
#ifndef KRAKEN_RELOAD_H
#define KRAKEN_RELOAD_H

#include "config.h"

/* Warns, one line per key, of every key that differs between CUR (the
 * running config) and NEXT and takes effect only after a restart. */
void reload_warn_restart(const struct config *cur, const struct config *next);

#endif
