/*
 * Error vocabulary shared by every module.
 *
 * Functions return 0 on success or a negative code: either -errno from the
 * system (-ENOENT, -EIO, ...) or one of the project codes below, which live
 * far from errno's range so the two never collide.  Nothing sets a global.
 */
#ifndef KRAKEN_ERR_H
#define KRAKEN_ERR_H

enum {
	KR_ECONFIG = -10000,  /* a configuration value is invalid */
	KR_EDB,               /* SQLite reported an error */
	KR_ESCHEMA,           /* journal schema is newer than this binary */
	KR_ECORRUPT,          /* stored data failed a consistency check */
	KR_ECHANGED,          /* a file changed while it was being read */
	KR_EIDENTITY,         /* journal belongs to a different node */
	KR_EUNSUPPORTED,      /* a file type the journal does not hold */
	KR_EHOSTILE,          /* a path escapes its volume or is malformed */
	KR_ECOMPACTED,        /* history asked for was compacted away */
	KR_ENOSOURCE,         /* no connected peer holds the content */
};

/* A static, human-readable description of any code this project returns. */
const char *kr_strerror(int code);

/*
 * For functions that explain failures in a malloc'd sentence: replaces
 * *ERRMSG (when ERRMSG is non-NULL) with the formatted text; the caller
 * frees it.  Out of memory leaves *ERRMSG NULL.
 */
void kr_seterr(char **errmsg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
