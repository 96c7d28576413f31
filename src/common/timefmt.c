/*
 * See timefmt.h.  Each form is tried in turn: "@" seconds, an age, then
 * a date with an optional time.  strptime reads the fields; the
 * fraction and the offset, which it does not know, are read here.
 */
#include "timefmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int parse_age(const char *s, int64_t now_ns, int64_t *out)
{
	static const struct { char c; int64_t s; } units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 },
	};
	unsigned long long n;
	char *end;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || !end[0] || end[1] || s[0] == '-')
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (units[i].c != *end)
			continue;
		if (n > (unsigned long long)(now_ns / 1000000000 / units[i].s))
			return -EINVAL;
		*out = now_ns - (int64_t)n * units[i].s * 1000000000;
		return 0;
	}
	return -EINVAL;
}

/* ".123" (any number of digits, nanoseconds kept) after the seconds. */
static const char *parse_fraction(const char *p, int64_t *ns)
{
	int64_t scale = 100000000;

	*ns = 0;
	if (*p != '.')
		return p;
	if (p[1] < '0' || p[1] > '9')
		return NULL;
	for (p++; *p >= '0' && *p <= '9'; p++) {
		*ns += (*p - '0') * scale;
		scale /= 10;
	}
	return p;
}

/* "", "Z" or "+HH:MM" / "-HH:MM": seconds east of UTC into *off. */
static int parse_offset(const char *p, int64_t *off)
{
	unsigned hh, mm;
	int used = 0;

	*off = 0;
	if (!*p || ((*p == 'Z' || *p == 'z') && !p[1]))
		return 0;
	if ((*p != '+' && *p != '-') ||
	    sscanf(p + 1, "%2u:%2u%n", &hh, &mm, &used) != 2 ||
	    p[1 + used] || used != 5 || hh > 23 || mm > 59)
		return -EINVAL;
	*off = (int64_t)(hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
	return 0;
}

int timefmt_parse(const char *s, int64_t now_ns, int64_t *out)
{
	struct tm tm = { 0 };
	const char *p;
	int64_t frac = 0, off = 0;
	time_t t;

	if (s[0] == '@') {
		long long v, scale = 100000000;
		char *end;

		errno = 0;
		v = strtoll(s + 1, &end, 10);
		if (errno || end == s + 1 || v < 0 ||
		    v > INT64_MAX / 1000000000)
			return -EINVAL;
		/* @SECONDS[.FRACTION], to the nanosecond; a dot needs a
		 * digit, as in the RFC 3339 form */
		if (*end == '.' && (end[1] < '0' || end[1] > '9'))
			return -EINVAL;
		if (*end == '.')
			for (end++; *end >= '0' && *end <= '9' && scale;
			     end++, scale /= 10)
				frac += (*end - '0') * scale;
		if (*end || v * 1000000000 > INT64_MAX - frac)
			return -EINVAL;
		*out = v * 1000000000 + frac;
		return 0;
	}
	if (parse_age(s, now_ns, out) == 0)
		return 0;
	p = strptime(s, "%Y-%m-%d", &tm);
	if (!p)
		return -EINVAL;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p = strptime(p + 1, "%H:%M:%S", &tm);
		if (p)
			p = parse_fraction(p, &frac);
		if (!p || parse_offset(p, &off))
			return -EINVAL;
	} else if (*p) {
		return -EINVAL;
	}
	t = timegm(&tm);
	if (t < 0 || t - off < 0 || t - off > INT64_MAX / 1000000000 - 1)
		return -EINVAL;
	*out = (int64_t)(t - off) * 1000000000 + frac;
	return 0;
}
