/*
 * kraken-journal versions VOLUME PATH: every version of one path, when
 * and where it was made, its size, and whether its content can be had
 * here: "live" (what the volume holds now), "kept" (in the store of
 * replaced content, src/journal/versions.c) or "gone".
 *
 * kraken-journal restore VOLUME PATH --at TIME --to DEST: the version
 * current at TIME (the newest made by then) written to DEST, a new file,
 * from the store or from the live file when that still holds it; the
 * copy is checked against the version's content hash before it gets its
 * name.  Both read only the journal and the store, with the agent
 * running or not.
 */
#include "kraken-journal.h"

#include "content.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct vlist {
	struct journal_versions *store;   /* NULL: nothing kept here */
	struct journal_state live;
	bool has_live;
	bool json;
	json_t *rows;
	unsigned count;
};

static const char *where(struct vlist *v, const struct journal_change *c)
{
	int fd;

	if (!c->has_hash)
		return "-";
	if (v->has_live && v->live.has_hash &&
	    memcmp(v->live.hash, c->hash, CONTENT_HASH_LEN) == 0)
		return "live";
	fd = v->store ? journal_versions_get(v->store, c->hash) : -ENOENT;
	if (fd < 0)
		return "gone";
	close(fd);
	return "kept";
}

static void utc(int64_t ns, char *out, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int on_version(void *arg, const struct journal_change *c)
{
	struct vlist *v = arg;
	const char *here = where(v, c);
	char when[32], hex[2 * CONTENT_HASH_LEN + 1] = "-";

	utc(c->wall_ns, when, sizeof(when));
	if (c->has_hash)
		content_hex(c->hash, hex);
	v->count++;
	if (v->json)
		return json_array_append_new(v->rows, json_pack(
			"{s:s,s:I,s:s,s:I,s:s,s:I,s:s,s:s}", "time", when,
			"wall_ns", (json_int_t)c->wall_ns, "origin",
			c->ref.origin, "seq", (json_int_t)c->ref.seq, "op",
			journal_op_name(c->op), "size", (json_int_t)c->size,
			"hash", hex, "content", here)) ? -ENOMEM : 0;
	printf("%-20s  %-28s  %-8s  %12llu  %.12s  %s\n", when, c->ref.origin,
	       journal_op_name(c->op), (unsigned long long)c->size, hex, here);
	return 0;
}

int kj_versions(struct journal *j, const char *db, const char *volume,
		const char *path, bool json)
{
	struct vlist v = { .json = json };
	char dir[4096];
	int err;

	snprintf(dir, sizeof(dir), "%s.versions", db);
	if (access(dir, F_OK) == 0 &&
	    journal_versions_open(j, dir, false, &v.store) != 0)
		v.store = NULL;
	v.has_live = journal_lookup(j, volume, path, &v.live) == 0;
	v.rows = json ? json_array() : NULL;
	if (!json)
		printf("%-20s  %-28s  %-8s  %12s  %-12s  %s\n", "TIME (UTC)",
		       "ORIGIN", "OP", "SIZE", "CONTENT", "HERE");
	err = journal_history(j, volume, path, on_version, &v);
	if (!err && json)
		json_dumpf(v.rows, stdout, JSON_INDENT(2));
	if (!err && json)
		putchar('\n');
	json_decref(v.rows);
	if (v.has_live)
		journal_state_release(&v.live);
	journal_versions_close(v.store);
	if (err) {
		fprintf(stderr, "kraken-journal: versions: %s\n",
			kr_strerror(err));
		return 2;
	}
	if (v.count == 0) {
		fprintf(stderr, "kraken-journal: no versions of %s/%s\n",
			volume, path);
		return 1;
	}
	return 0;
}

/* ---- restore ------------------------------------------------------------ */

/* The version of a path current at a time: the newest made by then. */
struct pick {
	int64_t at_ns;
	bool found;
	struct journal_change c;
	int64_t first_ns;         /* the first version, when all are after */
	char *target;
};

static int on_pick(void *arg, const struct journal_change *c)
{
	struct pick *p = arg;

	if (c->wall_ns > p->at_ns) {
		if (!p->found && (!p->first_ns || c->wall_ns < p->first_ns))
			p->first_ns = c->wall_ns;
		return 0;
	}
	if (p->found && (c->wall_ns < p->c.wall_ns ||
			 (c->wall_ns == p->c.wall_ns &&
			  c->lamport < p->c.lamport)))
		return 0;
	free(p->target);
	p->target = c->target ? strdup(c->target) : NULL;
	p->c = *c;
	p->c.target = p->target;
	p->c.bases = NULL;
	p->c.n_bases = 0;
	p->found = true;
	return 0;
}

/* The live file ROOT/VOLUME/PATH when it holds HASH still: an fd. */
static int open_live(const char *root, const char *volume, const char *path,
		     const uint8_t hash[CONTENT_HASH_LEN])
{
	struct content c = { 0 };
	char full[8192];
	int fd;

	if (!root || snprintf(full, sizeof(full), "%s/%s/%s", root, volume,
			      path) >= (int)sizeof(full))
		return -ENOENT;
	fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (content_hash_fd(fd, &c) != 0 ||
	    memcmp(c.hash, hash, CONTENT_HASH_LEN) != 0) {
		content_release(&c);
		close(fd);
		return -ENOENT;
	}
	content_release(&c);
	return fd;
}

/* Copies FROM to DEST (made new, through a temporary name), checks the
 * copy against HASH, and gives it the version's mode and mtime. */
static int copy_checked(int from, const char *dest,
			const struct journal_change *c)
{
	char tmp[8192], buf[65536];
	struct content got = { 0 };
	struct timespec times[2];
	ssize_t n;
	int to, err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.krakenfs-restore", dest) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	to = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (to < 0)
		return -errno;
	if (lseek(from, 0, SEEK_SET) != 0)
		err = -errno;
	while (!err && (n = read(from, buf, sizeof(buf))) != 0) {
		if (n < 0 || write(to, buf, (size_t)n) != n)
			err = n < 0 ? -errno : -EIO;
	}
	if (!err && fsync(to) != 0)
		err = -errno;
	if (!err && (content_hash_fd(to, &got) != 0 ||
		     memcmp(got.hash, c->hash, CONTENT_HASH_LEN) != 0))
		err = KR_ECORRUPT;
	content_release(&got);
	times[0].tv_sec = 0;
	times[0].tv_nsec = UTIME_OMIT;
	times[1].tv_sec = c->mtime_ns / 1000000000;
	times[1].tv_nsec = c->mtime_ns % 1000000000;
	if (!err && (fchmod(to, c->mode & 07777) != 0 ||
		     futimens(to, times) != 0))
		err = -errno;
	close(to);
	if (!err && link(tmp, dest) != 0)
		err = -errno;     /* never over an existing file */
	unlink(tmp);
	return err;
}

static int restore_fail(const char *volume, const char *path, const char *why)
{
	fprintf(stderr, "kraken-journal: restore %s/%s: %s\n", volume, path,
		why);
	return 1;
}

static int kj_restore(struct journal *j, const char *db, const char *root,
		      const char *volume, const char *path, int64_t at_ns,
		      const char *dest)
{
	struct pick p = { .at_ns = at_ns };
	struct journal_versions *store = NULL;
	char dir[4096], when[32], why[512];
	int fd = -ENOENT, err;

	err = journal_history(j, volume, path, on_pick, &p);
	if (err)
		return restore_fail(volume, path, kr_strerror(err)) + 1;
	if (!p.found) {
		utc(p.first_ns, when, sizeof(when));
		snprintf(why, sizeof(why), p.first_ns ? "it did not exist yet "
			 "at that time (its first version is of %s UTC)" :
			 "the journal knows no version of it", when);
		free(p.target);
		return restore_fail(volume, path, why);
	}
	utc(p.c.wall_ns, when, sizeof(when));
	if (p.c.mode == 0 || !S_ISREG(p.c.mode) || !p.c.has_hash) {
		snprintf(why, sizeof(why), "%s at that time (by %s at %s UTC); "
			 "only files are restored to a file", p.c.mode == 0 ?
			 "it was deleted" : "it was not a file", p.c.ref.origin,
			 when);
		free(p.target);
		return restore_fail(volume, path, why);
	}
	snprintf(dir, sizeof(dir), "%s.versions", db);
	if (access(dir, F_OK) == 0 &&
	    journal_versions_open(j, dir, false, &store) == 0)
		fd = journal_versions_get(store, p.c.hash);
	if (fd < 0)
		fd = open_live(root, volume, path, p.c.hash);
	if (fd < 0) {
		snprintf(why, sizeof(why), "the content of its version of %s "
			 "UTC (by %s) is not kept on this node: pruned "
			 "(versions.keep, versions.max_bytes), or replaced by "
			 "a write on this node itself", when, p.c.ref.origin);
		journal_versions_close(store);
		free(p.target);
		return restore_fail(volume, path, why);
	}
	err = copy_checked(fd, dest, &p.c);
	close(fd);
	journal_versions_close(store);
	if (err) {
		free(p.target);
		return restore_fail(volume, path, err == -EEXIST ?
				    "the destination exists; name a new file" :
				    kr_strerror(err)) + 1;
	}
	printf("restored %s/%s as it was at that time (the version of %s UTC, "
	       "by %s, %llu bytes) to %s\n", volume, path, when, p.c.ref.origin,
	       (unsigned long long)p.c.size, dest);
	free(p.target);
	return 0;
}

int kj_restore_cmd(struct journal *j, const char *db, const char *root,
		   int argc, char **argv)
{
	static const struct option opts[] = {
		{ "at", required_argument, NULL, 'a' },
		{ "to", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *at = NULL, *to = NULL;
	char *stored_root = NULL;
	int64_t at_ns = 0;
	int c, rc;

	/* 0, not 1: a full start again, so that options may follow the
	 * operands (the tool's own getopt stopped at the command). */
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': at = optarg; break;
		case 't': to = optarg; break;
		case 'h':
			printf("usage: kraken-journal restore VOLUME PATH --at "
			       "TIME --to DEST\n");
			return 0;
		default: return 2;
		}
	}
	if (argc - optind != 2 || !at || !to) {
		fprintf(stderr, "kraken-journal: restore: expected VOLUME PATH "
			"--at TIME --to DEST\n");
		return 2;
	}
	if (kj_parse_time(at, &at_ns)) {
		fprintf(stderr, "kraken-journal: restore: --at '%s': expected a "
			"time such as 2026-12-07T10:00:00Z, @SECONDS or an age "
			"(30m, 2h)\n", at);
		return 2;
	}
	if (!root && journal_meta_get(j, "volume_root", &stored_root) == 0)
		root = stored_root;
	rc = kj_restore(j, db, root, argv[optind],
			argv[optind + 1] + strspn(argv[optind + 1], "/"), at_ns,
			to);
	free(stored_root);
	return rc;
}
