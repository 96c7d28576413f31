/*
 * What the fuzz targets of this directory share: the libFuzzer entry
 * point every target defines (called by libFuzzer, or by replay_main.c
 * in a normal build) and the check that turns a broken property into a
 * crash, the only failure a fuzzer reports.
 */
#ifndef KRAKEN_FUZZ_H
#define KRAKEN_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts when COND is false, naming it: a bare abort() would leave the
 * reader of a crash report to guess which property broke. */
#define FUZZ_CHECK(cond) \
	((cond) ? (void)0 : fuzz_fail(__LINE__, #cond))

static inline void fuzz_fail(int line, const char *what)
{
	fprintf(stderr, "fuzz property broken at line %d: %s\n", line, what);
	abort();
}

#endif
