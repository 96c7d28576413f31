/*
 * libFuzzer target for the REST API's query-string values: the time of
 * since= and until= (timefmt_parse) and the op= name (journal_op_parse).
 * The input, up to its first NUL, is one value as libmicrohttpd hands it
 * over: a C string.
 *
 * Checked, for three clocks (0, today, and the last representable
 * nanosecond, where an age is most likely to overflow):
 *  - the answer is 0 or -EINVAL, and a time it accepts is not negative;
 *  - parsing is a function of the text and the clock: twice, same answer;
 *  - what it accepts means what it says: the time written back by
 *    rest_format_time (milliseconds), as "@SECONDS" and as an age in
 *    seconds parses back to that time, so no form is read one way and
 *    shown another;
 *  - an op name is accepted only if it is the name journal_op_name gives.
 */
#include "fuzz.h"

#include "journal.h"
#include "rest_render.h"
#include "timefmt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS INT64_C(1000000000)
#define MS INT64_C(1000000)

static void fuzz_same_time(const char *text, int64_t now, int64_t want)
{
	int64_t got = -1;

	FUZZ_CHECK(timefmt_parse(text, now, &got) == 0);
	FUZZ_CHECK(got == want);
}

/* Writes T back in every form the parser reads and parses it again. */
static void fuzz_round_trip(int64_t t, int64_t now)
{
	char text[64];

	/* The RFC 3339 form stops a second short of INT64_MAX nanoseconds
	 * (the parser's own bound); "@" and ages reach the end. */
	if (t / NS <= INT64_MAX / NS - 1) {
		rest_format_time(t, text, sizeof(text));
		fuzz_same_time(text, now, t / MS * MS);
	}
	snprintf(text, sizeof(text), "@%" PRId64, t / NS);
	fuzz_same_time(text, now, t / NS * NS);
	if (t <= now && (now - t) % NS == 0) {
		snprintf(text, sizeof(text), "%" PRId64 "s", (now - t) / NS);
		fuzz_same_time(text, now, t);
	}
}

static void fuzz_time(const char *text, int64_t now)
{
	int64_t first = -1, again = -1;
	int err = timefmt_parse(text, now, &first);

	FUZZ_CHECK(err == 0 || err == -EINVAL);
	FUZZ_CHECK(timefmt_parse(text, now, &again) == err);
	if (err)
		return;
	FUZZ_CHECK(again == first);
	FUZZ_CHECK(first >= 0);
	fuzz_round_trip(first, now);
}

static void fuzz_op(const char *text)
{
	enum journal_op op = journal_op_parse(text);

	if (op)
		FUZZ_CHECK(strcmp(journal_op_name(op), text) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int64_t clocks[] = {
		0, INT64_C(1767225600) * NS + 123456789, INT64_MAX,
	};
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	for (size_t i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++)
		fuzz_time(text, clocks[i]);
	fuzz_op(text);
	free(text);
	return 0;
}
