/* See nodeid.h. */
#include "nodeid.h"

#include <string.h>

static bool node_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool node_id_ok(const char *s, size_t len)
{
	if (len < 1 || len > NODE_ID_MAX)
		return false;
	if ((len == 1 && s[0] == '.') || (len == 2 && !memcmp(s, "..", 2)))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!node_char_ok(s[i]))
			return false;
	return true;
}
