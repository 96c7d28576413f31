#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kr_strerror(int code)
{
	switch (code) {
	case 0: return "success";
	case KR_ECONFIG: return "invalid configuration";
	case KR_EDB: return "journal database error";
	case KR_ESCHEMA: return "journal schema is newer than this program";
	case KR_ECORRUPT: return "stored data is corrupt";
	case KR_ECHANGED: return "file changed while being read";
	case KR_EIDENTITY: return "journal belongs to another node";
	case KR_EUNSUPPORTED: return "unsupported file type";
	case KR_EHOSTILE: return "path escapes its volume";
	case KR_ECOMPACTED: return "that history was compacted";
	case KR_ENOSOURCE: return "no connected peer holds its content";
	}
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

void kr_seterr(char **errmsg, const char *fmt, ...)
{
	va_list ap;

	if (!errmsg)
		return;
	free(*errmsg);
	*errmsg = NULL;
	va_start(ap, fmt);
	if (vasprintf(errmsg, fmt, ap) < 0)
		*errmsg = NULL;
	va_end(ap);
}
