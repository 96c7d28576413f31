/*
 * Journals standing for the nodes of a cluster, for the journal-level
 * replication tests: entries pass between them the way peer sessions
 * pass them (per origin, in seq order, from what the receiver holds),
 * and jobs are "applied" at once.  A delivery that meets compacted
 * history falls back to a state exchange, as the replicator does.
 */
#include "content.h"
#include "err.h"
#include "journal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "net_sim.h"

int64_t net_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *const net_texts[TEXTS] = { "alpha", "bravo", "charlie", "delta" };
struct content net_contents[TEXTS];
static int net_open_count;

int net_open(struct net **out)
{
	static const char *const ids[NODES] = { "n0", "n1", "n2" };
	struct net *n = calloc(1, sizeof(*n));

	snprintf(n->dir, sizeof(n->dir), "/tmp/kraken-replica-XXXXXX");
	if (!mkdtemp(n->dir))
		return -1;
	for (int i = 0; i < NODES; i++) {
		char db[128], id[8];
		struct journal_info info;
		struct stat st = { .st_mode = S_IFDIR | 0755 };

		snprintf(db, sizeof(db), "%s/n%d.db", n->dir, i);
		snprintf(id, sizeof(id), "n%d", i);
		if (journal_open(db, id, 0, &n->j[i], NULL) ||
		    journal_info(n->j[i], &info) ||
		    journal_peers_set(n->j[i], ids, NODES, net_now_ns()))
			return -1;
		snprintf(n->origin[i], sizeof(n->origin[i]), "%s", info.origin);
		/* Every node made the volume itself: identical concurrent
		 * creations, which must not be a conflict. */
		if (journal_record_volume(n->j[i], "vol", true, &st))
			return -1;
	}
	/* The texts are shared by every cluster open at the time. */
	if (net_open_count++ == 0)
		for (int t = 0; t < TEXTS; t++)
			if (content_hash_buf(net_texts[t], strlen(net_texts[t]),
					     &net_contents[t]))
				return -1;
	*out = n;
	return 0;
}

int net_close(struct net *n)
{
	char cmd[128];

	for (int i = 0; i < NODES; i++)
		journal_close(n->j[i]);
	if (--net_open_count == 0)
		for (int t = 0; t < TEXTS; t++)
			content_release(&net_contents[t]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", n->dir);
	if (getenv("KRAKEN_TEST_KEEP")) {     /* to look at after a failure */
		printf("kept %s\n", n->dir);
		snprintf(cmd, sizeof(cmd), "true");
	}
	free(n);
	return system(cmd) == 0 ? 0 : -1;
}

struct stat net_file_stat(int text, uint32_t uid)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0644;
	st.st_size = (off_t)strlen(net_texts[text]);
	st.st_uid = uid;
	st.st_mtim.tv_sec = 1000 + text;
	return st;
}

void net_put(struct net *n, int node, const char *path, int text)
{
	struct stat st = net_file_stat(text, 0);

	assert_int_equal(journal_record_put(n->j[node], "vol", path, &st,
					    &net_contents[text]), 0);
}

/* Delivers what FROM holds and TO lacks, for every origin, like a peer
 * session does after HELLO. */
struct net_deliver {
	struct journal *to;
	int added;
};

static int deliver_one(void *arg, const struct journal_change *c)
{
	struct net_deliver *d = arg;
	int err = journal_add_remote(d->to, c);

	assert_true(err == 0 || err == -EALREADY);
	d->added += err == 0;
	return 0;
}

static int stage_one(void *arg, const struct journal_change *c)
{
	return journal_exchange_stage(arg, c);
}

void net_exchange(struct net *n, int from, int to)
{
	struct journal_exchange *x = NULL;
	const struct journal_ref *vector;
	size_t len;
	uint64_t changed;
	int more;

	assert_int_equal(journal_exchange_open(n->j[from], &x, &vector, &len),
			 0);
	assert_int_equal(journal_exchange_begin(n->j[to]), 0);
	do {
		more = journal_exchange_next(n->j[from], x, 7, stage_one,
					     n->j[to]);
		assert_true(more >= 0);
	} while (more);
	assert_int_equal(journal_exchange_apply(n->j[to], vector, len,
						&changed), 0);
	journal_exchange_close(n->j[from], x);
	assert_int_equal(journal_flush(n->j[to]), 0);
	n->exchanges++;
}

int net_deliver(struct net *n, int from, int to)
{
	struct net_deliver d = { .to = n->j[to] };

	for (int o = 0; o < NODES; o++) {
		uint64_t have = journal_have(n->j[to], n->origin[o]);
		int err;

		if (o == to)
			continue;
		err = journal_entries_since(n->j[from], n->origin[o], have,
					    100000, deliver_one, &d);
		if (err == KR_ECOMPACTED) {
			net_exchange(n, from, to);
			d.added++;
			o = -1;       /* every origin again, from the new state */
			continue;
		}
		assert_int_equal(err, 0);
	}
	assert_int_equal(journal_flush(n->j[to]), 0);
	return d.added;
}

void net_ack(struct net *n, int node, int peer, int64_t now_ns)
{
	struct journal_ref *refs = NULL;
	size_t len = 0;
	char id[8];

	snprintf(id, sizeof(id), "n%d", peer);
	assert_int_equal(journal_vector_copy(n->j[peer], &refs, &len), 0);
	assert_int_equal(journal_peer_report(n->j[node], id, refs, len,
					     now_ns), 0);
	free(refs);
	assert_int_equal(journal_flush(n->j[node]), 0);
}

void net_compact(struct net *n, int node, int64_t now_ns, int64_t pin_max_ns,
		 struct journal_compact_stats *st)
{
	struct journal_retention r = { 0, pin_max_ns, now_ns };
	struct journal_compact_stats local;

	assert_int_equal(journal_compact(n->j[node], &r, st ? st : &local), 0);
}

int net_text_of(const uint8_t *hash)
{
	for (int t = 0; t < TEXTS; t++)
		if (memcmp(net_contents[t].hash, hash, CONTENT_HASH_LEN) == 0)
			return t;
	return -1;
}

/* Plays the applier: every job "written" to disk at once. */
int net_apply_jobs(struct net *n, int node)
{
	struct journal_job jobs[64];
	int done = 0, k;

	while ((k = journal_jobs(n->j[node], NULL, jobs, 64)) > 0) {
		for (int i = 0; i < k; i++) {
			struct stat st;

			memset(&st, 0, sizeof(st));
			st.st_mode = jobs[i].mode;
			st.st_uid = jobs[i].uid;
			st.st_gid = jobs[i].gid;
			st.st_size = (off_t)jobs[i].size;
			if (jobs[i].has_hash) {
				int t = net_text_of(jobs[i].hash);

				assert_true(t >= 0);
				assert_int_equal(journal_content_store(
					n->j[node], &net_contents[t], NULL), 0);
			}
			assert_int_equal(journal_job_done(n->j[node], &jobs[i],
				jobs[i].op == JOURNAL_DELETE ? NULL : &st), 0);
			journal_job_release(&jobs[i]);
			done++;
		}
		assert_true(done < 10000);
	}
	assert_true(k >= 0);
	assert_int_equal(journal_flush(n->j[node]), 0);
	return done;
}

void net_settle(struct net *n)
{
	for (int round = 0; round < 50; round++) {
		int moved = 0;

		for (int a = 0; a < NODES; a++)
			for (int b = 0; b < NODES; b++)
				if (a != b)
					moved += net_deliver(n, a, b);
		for (int a = 0; a < NODES; a++)
			moved += net_apply_jobs(n, a);
		if (moved == 0)
			return;
	}
	fail_msg("no quiescence after 50 rounds");
}

/* The disk state of a node: "path=text" lines in path order. */
struct snap {
	char text[NET_SNAP_MAX];
};

static int snap_one(void *arg, const char *volume, const char *path,
		    const struct journal_state *s)
{
	struct snap *sn = arg;
	size_t len = strlen(sn->text);

	int w;

	(void)volume;
	w = snprintf(sn->text + len, sizeof(sn->text) - len, "%s=%d/%o;", path,
		     s->has_hash ? net_text_of(s->hash) : -1, s->mode);
	assert_true(w > 0 && (size_t)w < sizeof(sn->text) - len);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void net_snapshot(struct net *n, int node, char *out, size_t cap)
{
	static struct snap sn;
	static char *items[4096];
	char *save = NULL;
	size_t k = 0;

	sn.text[0] = '\0';
	assert_int_equal(journal_foreach_state(n->j[node], "vol", snap_one,
					       &sn), 0);
	for (char *tok = strtok_r(sn.text, ";", &save); tok && k < 4096;
	     tok = strtok_r(NULL, ";", &save))
		items[k++] = tok;
	qsort(items, k, sizeof(items[0]), cmp_str);
	out[0] = '\0';
	for (size_t i = 0, len = 0; i < k; i++) {
		int w = snprintf(out + len, cap - len, "%s;", items[i]);

		assert_true(w > 0 && (size_t)w < cap - len);
		len += (size_t)w;
	}
}

/* Fails naming the first entry where snapshots A (of node NA) and B
 * differ: whole snapshots are too long to read. */
void net_fail_diff(const char *a, const char *b, int na, int nb)
{
	size_t i = 0, start;

	while (a[i] && a[i] == b[i])
		i++;
	start = i;
	while (start > 0 && a[start - 1] != ';')
		start--;
	fail_msg("snapshots differ at byte %zu\n%d: %.160s\n%d: %.160s", i,
		 na, a + start, nb, b + start);
}

void net_assert_converged(struct net *n)
{
	static char a[NET_SNAP_MAX], b[NET_SNAP_MAX];
	uint64_t jobs;

	net_snapshot(n, 0, a, sizeof(a));
	for (int i = 1; i < NODES; i++) {
		net_snapshot(n, i, b, sizeof(b));
		if (strcmp(a, b) != 0)
			net_fail_diff(a, b, 0, i);
	}
	for (int i = 0; i < NODES; i++) {
		struct journal_job job;

		assert_int_equal(journal_job_count(n->j[i], &jobs), 0);
		if (jobs && journal_jobs(n->j[i], NULL, &job, 1) == 1) {
			fail_msg("node %d: %llu jobs left, first %s %s "
				 "(copy of %s) after %u attempts", i,
				 (unsigned long long)jobs,
				 journal_op_name(job.op), job.path,
				 job.copy_of ? job.copy_of : "-",
				 job.attempts);
		}
	}
}


void net_mkdir(struct net *n, int node, const char *path)
{
	struct stat st = { .st_mode = S_IFDIR | 0755 };

	assert_int_equal(journal_record_mkdir(n->j[node], "vol", path, &st),
			 0);
}

